"""physkit.flow: batched projected gradient flows (one parameter set per problem, thousands at once).

Public API (contract shared with SHAPER and FINDER; details in each module's docstring)::

    from physkit.flow import (minimize, FlowResult, Status, is_final_evaluation,
                              Free, Positive, Simplex, Angle, Box, Annealing,
                              Expandable, expand_and_minimize, ExpansionResult, Koopman, dmd_jump,
                              lojasiewicz_exponent, predicted_rate, ntk_mu,
                              architecture_jacobian, ntk_mu_fn)

    minimize(loss_fn, params, constraints=None, *, steps=500, optimizer="adam"|"nesterov"|"gd",
             lr=1e-2, schedule=None|"cosine"|"exp"|callable, noise=None|Annealing(...), tol=1e-6,
             patience=10, device=None, history=False, grad_history=False, mu_fn=None,
             mu_stride=None, generator=None, optimizer_options=None,
             koopman=None|Koopman(...)) -> FlowResult
        loss_fn(params_active: dict[str, (b, ...)], idx: (b,) int64) -> (b,)
    FlowResult(params, loss (B,), n_steps (B,) int64, status (B,) int8, history (T, B) | None,
               grad_norm_history (T, B) | None, mu_history (T_mu, B) | None, mu_steps (T_mu,) | None,
               n_jumps (B,) | None)
    Status: CONVERGED=0, MAX_STEPS=1, NONFINITE=2, BAD_INPUT=3 (IntEnum)
    Free(); Positive(min=0.0); Simplex(); Angle(period=2*pi); Box(lo, hi, per_row=False)
        .project(t, idx=None) -> t
    Annealing(T0, schedule="exp"|"linear"|"log"|callable, decay=None, seed=None, cutoff=1e-3,
              fraction=0.5)
    Koopman(window=6, horizon=100, max_radius=0.99, rtol=1e-8)   # DMD jump-ahead (minimize koopman=)
    dmd_jump(history (W, b, P), horizon, max_radius=0.99, rtol=1e-8) -> (target (b, P), ok (b,))
    expand_and_minimize(arch, params, *, loss_fn_factory=None, constraints=None, max_stages=10,
                        gain_tol=1e-3, max_size=None, **minimize_kwargs) -> ExpansionResult
    lojasiewicz_exponent(loss_history, grad_norm_history, loss_star=None) -> (B,)
    predicted_rate(alpha) -> PredictedRate(kind, loss_exponent, grad_exponent, distance_exponent)
    ntk_mu(jacobian (B, P_out, M), rtol=None, *, return_rank=False) -> (B,)
    architecture_jacobian(arch_fn, params, idx=None, *, method="auto") -> (b, P_out, M)
    ntk_mu_fn(arch_fn, rtol=None) -> mu_fn(params, idx) -> (b,)
"""
from __future__ import annotations

from physkit.flow.annealing import Annealing, lr_factor
from physkit.flow.constraints import Angle, Box, Constraint, Free, Positive, Simplex, project_simplex
from physkit.flow.diagnostics import (
    PredictedRate,
    architecture_jacobian,
    lojasiewicz_exponent,
    ntk_mu,
    ntk_mu_fn,
    predicted_rate,
)
from physkit.flow.expansion import Expandable, ExpansionResult, expand_and_minimize
from physkit.flow.koopman import Koopman, dmd_jump
from physkit.flow.minimize import FlowResult, Status, is_final_evaluation, minimize
from physkit.flow.optimizers import Adam, GD, Nesterov, Optimizer, make_optimizer

__all__ = [
    "minimize", "FlowResult", "Status", "is_final_evaluation",
    "Constraint", "Free", "Positive", "Simplex", "Angle", "Box", "project_simplex",
    "Annealing", "lr_factor",
    "Optimizer", "Adam", "Nesterov", "GD", "make_optimizer",
    "Expandable", "ExpansionResult", "expand_and_minimize", "Koopman", "dmd_jump",
    "lojasiewicz_exponent", "predicted_rate", "PredictedRate", "ntk_mu", "architecture_jacobian", "ntk_mu_fn",
]

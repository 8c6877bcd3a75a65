"""Mean field of residual networks and their random Jacobians (NumPy only).

The block of Tarnowski, Warchol, Jastrzebski, Tabor & Nowak (2019) is

    x^{l+1} = x^l + a phi(h^l),     h^l = W^l x^l + b^l,     l = 0 .. L-1,

with branch scale ``a`` (``branch_scale``), weights W^l = sigma_w O (O Haar orthogonal)
or i.i.d. N(0, sigma_w2 / N), biases b^l ~ N(0, sigma_b2) and an input x^0 ~ N(0, q0)
per coordinate. Its input-output Jacobian is

    J = dx^L / dx^0 = prod_{l=L-1}^{0} (I + a D^l W^l),     D^l = diag(phi'(h^l)).

**Mean field** (width N -> infinity). W^l is independent of x^l, so the coordinates of
h^l are N(0, q_h^l) with q_h^l = sigma_w2 Q^l + sigma_b2, where Q^l = |x^l|^2 / N is the
second moment of x's coordinates; nothing settles to a fixed point. A unit with
E[phi(h)] != 0 (ReLU, GELU, ...) adds the same mean to every coordinate of x at every
block: x^l = M^l 1 + (fluctuations), and since h_i is independent of x_i except through
that common mean, E[x_i phi(h_i)] = M^l E[phi(h^l)]:

    M^{l+1} = M^l + a E[phi(h^l)],
    Q^{l+1} = Q^l + 2 a M^l E[phi(h^l)] + a^2 E[phi(h^l)^2],     M^0 = 0, Q^0 = q0.

For ReLU the common component grows like a l, so Q^L grows like a^2 L^2 even at a fixed
a^2 L (the coordinate variance Q - M^2 stays O(a^2 L)).

**Moments of the Jacobian.** X_l = a D^l W^l is R-diagonal (W Haar, or Gaussian), so
tau(X_l) = 0 and the blocks F_l = I + X_l are asymptotically free. With
c_l = a^2 sigma_w2 mu_1(q_h^l) (mu_k = E[phi'(h)^(2k)]) one block has
E[lambda] = 1 + c_l and Var[lambda] = 2 c_l + c_l^2 (mu_2/mu_1^2 - 1 - s_1) (s_1 = 0
orthogonal, -1 Gaussian: the plain network's per-layer variance, Pennington et al. 2017,
eq. 16); free products multiply means and add normalised variances, so

    E[lambda_{JJ^T}] = prod_l (1 + c_l),
    Var[lambda_{JJ^T}] / E[lambda]^2 = sum_l (2 c_l + c_l^2 (mu_2/mu_1^2 - 1 - s_1)) / (1 + c_l)^2.

For small a this is 2 a^2 sigma_w2 sum_l mu_1(q_h^l) whatever the activation: residual
networks approach isometry with a ~ 1/sqrt(L) for any unit (:func:`residual_branch_scale`).

**The other form.** h^{l+1} = h^l + a (W^l phi(h^l) + b^l) (the unit acts on the residual
stream) has J = prod (I + a W^l D^l) with D^l changing slowly from block to block, so the
factors are not free. The free product of per-block laws (the "naive" law,
:func:`_stream_moments`) then gets the mean about right but underestimates the variance;
measured against width-500 networks (6 each) at a^2 L = 2, L = 8 and 32, both weight laws, the naive
variance is 14%-19% below the networks' for tanh and 14%-22% below for ReLU, while the naive mean is
within 2% (tests/test_residual.py checks a gap in [8%, 25%]). Only the block above is covered by
:func:`isometry.residual_spectrum`.

References:
    W. Tarnowski, P. Warchol, S. Jastrzebski, J. Tabor, M. A. Nowak, "Dynamical isometry is
    achieved in residual networks in a universal way for any activation function", AISTATS 2019.
    G. Yang, S. S. Schoenholz, "Mean field residual networks: on the edge of chaos", NeurIPS 2017.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ._checks import available_memory, check_fits, check_int, check_nonnegative, check_positive
from .activations import Activation, get_activation
from .gaussian import gauss_nodes
from .meanfield import mu as _mu

__all__ = [
    "ResidualMeanField",
    "residual_mean_field",
    "residual_eigenvalues",
    "residual_branch_scale",
    "MAX_RESIDUAL_DEPTH",
]

MAX_RESIDUAL_DEPTH = 10**5
"""The largest depth the residual theory is computed for (the mean field is a sequential recursion)."""

_Q_MAX = 1e250  # second moments beyond this are refused (the D^2 law and the spectrum's scale need finite q)


# ------------------------------------------------------------------------ argument checks
def _branch_scale(value) -> float:
    return check_nonnegative("branch_scale", value)


def _depth(value) -> int:
    return check_int("depth", value, 1, hi=MAX_RESIDUAL_DEPTH, integral_float=True)


def _variances(sigma_w2, sigma_b2, q0) -> tuple[float, float, float]:
    return (check_positive("sigma_w2", sigma_w2), check_nonnegative("sigma_b2", sigma_b2),
            check_positive("q0", q0))


# ------------------------------------------------------------------------ the mean field
@dataclass(frozen=True, eq=False)
class ResidualMeanField:
    """The signal of a residual network x^{l+1} = x^l + a phi(W^l x^l + b^l), block by block.

    Arrays over blocks (l = 0 .. L-1): ``q_h`` (variance of the pre-activation h^l),
    ``mean_phi`` (E[phi(h^l)]), ``mu1``, ``mu2`` (E[phi'(h^l)^2], E[phi'(h^l)^4]).
    Arrays over layers (l = 0 .. L): ``second_moment`` Q^l = |x^l|^2 / N and ``mean``
    M^l (the common component of x^l's coordinates). Made by :func:`residual_mean_field`.
    """

    activation: str
    depth: int
    branch_scale: float
    sigma_w2: float
    sigma_b2: float
    q0: float
    second_moment: np.ndarray = field(repr=False)
    mean: np.ndarray = field(repr=False)
    q_h: np.ndarray = field(repr=False)
    mean_phi: np.ndarray = field(repr=False)
    mu1: np.ndarray = field(repr=False)
    mu2: np.ndarray = field(repr=False)
    homogeneous: bool = False

    @property
    def variance(self) -> np.ndarray:
        """Q^l - (M^l)^2: the variance of x^l's coordinates about their common mean."""
        return self.second_moment - self.mean**2

    @property
    def branch_gain(self) -> np.ndarray:
        """c_l = a^2 sigma_w2 mu_1(q_h^l): E[lambda] of block l is 1 + c_l."""
        return self.branch_scale**2 * self.sigma_w2 * self.mu1

    def log_mean(self) -> float:
        """log E[lambda] of J J^T: sum_l log(1 + c_l) (never overflows)."""
        return float(np.sum(np.log1p(self.branch_gain)))

    def normalised_variance(self, weights="orthogonal") -> float:
        """Var[lambda] / E[lambda]^2 of J J^T: sum_l (2 c_l + c_l^2 (mu_2/mu_1^2 - 1 - s_1)) / (1 + c_l)^2.

        ``weights``: "orthogonal" (s_1 = 0), "gaussian" (s_1 = -1), or any weight law
        (:func:`isometry.spectrum.weight_law`).
        """
        from .spectrum.s_transforms import weight_law

        return float(np.sum(_block_variances(self.branch_gain, self.mu1, self.mu2, weight_law(weights).s1)))

    @property
    def signal_gain(self) -> float:
        """Q^L / q0 = |x^L|^2 / |x^0|^2. For positively homogeneous units without biases
        x^L = J x^0, so this is |J x^0|^2 / |x^0|^2: the gain of J along the input."""
        return float(self.second_moment[-1] / self.q0)

    def to_dict(self) -> dict[str, Any]:
        """Parameters, the per-block and per-layer arrays (as lists) and the Jacobian's moments."""
        return {"activation": self.activation, "depth": self.depth, "branch_scale": self.branch_scale,
                "sigma_w2": self.sigma_w2, "sigma_b2": self.sigma_b2, "q0": self.q0,
                "second_moment": self.second_moment.tolist(), "mean": self.mean.tolist(), "q_h": self.q_h.tolist(),
                "mean_phi": self.mean_phi.tolist(), "mu1": self.mu1.tolist(), "mu2": self.mu2.tolist(),
                "log_mean": self.log_mean(), "signal_gain": self.signal_gain}


def _block_variances(c: np.ndarray, mu1: np.ndarray, mu2: np.ndarray, s1: float) -> np.ndarray:
    """Normalised variance of each block |I + a D W|^2: (2 c + c^2 (mu_2/mu_1^2 - 1 - s_1)) / (1 + c)^2."""
    kappa = mu2 / (mu1 * mu1) - 1.0 - s1
    return np.maximum(2.0 * c + c * c * kappa, 0.0) / np.square(1.0 + c)


def _phi_moments(a: Activation) -> Callable[[float], tuple[float, float]]:
    """q -> (E[phi(h)], E[phi(h)^2]) for h ~ N(0, q), fast enough to call once per block."""
    if a.homogeneous:  # phi(s h) = s phi(h) for s > 0
        z, w = gauss_nodes()
        f = np.asarray(a.phi(z), dtype=float)
        e1, e2 = float(f @ w), float((f * f) @ w)
        return lambda q: (math.sqrt(q) * e1, q * e2)
    off = tuple(k for k in a.kinks if k != 0.0)
    z0, w0 = gauss_nodes()

    def moments(q: float) -> tuple[float, float]:
        if off and q > 0:
            z, w = gauss_nodes(tuple(k / math.sqrt(q) for k in off))
        else:
            z, w = z0, w0
        f = np.asarray(a.phi(math.sqrt(q) * z), dtype=float)
        return float(f @ w), float((f * f) @ w)

    return moments


def residual_mean_field(activation, depth: int, *, branch_scale: float, sigma_w2: float = 1.0,
                        sigma_b2: float = 0.0, q0: float = 1.0) -> ResidualMeanField:
    """The mean field of x^{l+1} = x^l + a phi(W^l x^l + b^l), x^0 ~ N(0, q0), for l = 0 .. L-1.

    Iterates q_h^l = sigma_w2 Q^l + sigma_b2, M^{l+1} = M^l + a E[phi(h^l)],
    Q^{l+1} = Q^l + 2 a M^l E[phi(h^l)] + a^2 E[phi(h^l)^2] (module docstring), and
    evaluates mu_k(q_h^l) = E[phi'(h^l)^(2k)] for the Jacobian's moments.

    Args:
        activation: a registry name, an :class:`isometry.Activation` or a callable phi.
        depth: L in [1, 1e5], the number of residual blocks.
        branch_scale: a >= 0, the factor on each residual branch.
        sigma_w2, sigma_b2: weight and bias variances (W_ij has variance sigma_w2 / N).
        q0: the variance of the input's coordinates.

    Returns:
        a :class:`ResidualMeanField`.

    Example:
        >>> mf = residual_mean_field("relu", 4, branch_scale=0.5)
        >>> round(float(mf.second_moment[1]), 12)      # 1 + 0.25 * E[relu(h)^2], h ~ N(0, 1)
        1.125
    """
    act = get_activation(activation)
    L = _depth(depth)
    a = _branch_scale(branch_scale)
    sw, sb, q_in = _variances(sigma_w2, sigma_b2, q0)
    moments = _phi_moments(act)
    Q = np.empty(L + 1)
    M = np.empty(L + 1)
    qh = np.empty(L)
    mphi = np.empty(L)
    Q[0], M[0] = q_in, 0.0
    for l in range(L):
        qh[l] = sw * Q[l] + sb
        e1, e2 = moments(qh[l])
        if not (math.isfinite(e1) and math.isfinite(e2)):
            raise ValueError(f"activation {act.name!r}: E[phi(h)] or E[phi(h)^2] is not finite at q_h={qh[l]:g} "
                             f"(block {l})")
        mphi[l] = e1
        M[l + 1] = M[l] + a * e1
        Q[l + 1] = Q[l] + 2.0 * a * M[l] * e1 + a * a * e2
        if not Q[l + 1] <= _Q_MAX:
            raise ValueError(
                f"the signal's second moment exceeds {_Q_MAX:g} at block {l + 1} (branch_scale={a:g}, depth={L}, "
                f"{act.name}): use a smaller branch_scale or depth")
    mu1 = np.asarray(_mu(act, qh, 1), dtype=float).reshape(L)
    mu2 = np.asarray(_mu(act, qh, 2), dtype=float).reshape(L)
    if not (np.all(np.isfinite(mu1)) and np.all(mu1 > 0) and np.all(np.isfinite(mu2))):
        raise ValueError(f"activation {act.name!r}: mu_1 = E[phi'(h)^2] vanishes or is not finite for q_h in "
                         f"[{qh.min():g}, {qh.max():g}]")
    return ResidualMeanField(act.name, L, a, sw, sb, q_in, Q, M, qh, mphi, mu1, mu2, bool(act.homogeneous))


# ------------------------------------------------------------------------ the branch scale
def residual_branch_scale(activation, depth: int, *, sigma0_2: float, sigma_w2: float = 1.0, sigma_b2: float = 0.0,
                          q0: float = 1.0, weights="orthogonal") -> float:
    """The branch scale a at which J J^T, normalised to mean 1, has variance ``sigma0_2``.

    Solves sum_l (2 c_l + c_l^2 (mu_2/mu_1^2 - 1 - s_1)) / (1 + c_l)^2 = sigma0_2 with
    c_l = a^2 sigma_w2 mu_1(q_h^l(a)) (the mean field drifts with a) for the smallest root
    (bracketing scan, then Brent; the residual is checked).

    **Depth scaling.** For small a the left side is 2 a^2 sigma_w2 sum_l mu_1(q_h^l), so

        a ~= sqrt(sigma0_2 / (2 sigma_w2 L mu_1)):   the 1/sqrt(L) rule,

    the same for every activation (only mu_1 at the signal's length enters). Known
    initialisations are special cases: ReZero (Bachlechner et al. 2020) and SkipInit (De &
    Smith 2020) put a = 0 at initialisation (J = I, sigma0_2 = 0; SkipInit also allows a small
    constant a <= 1/sqrt(L)); Fixup (Zhang, Dauphin & Ma 2019) zero-initialises each branch's
    last layer (a = 0 again) and rescales the other branch layers by L^{-1/(2m-2)} for
    m-layer branches, which for m = 2 is this 1/sqrt(L) rule.

    Args:
        activation: a registry name, an :class:`isometry.Activation` or a callable phi.
        depth: L in [1, 1e5].
        sigma0_2: the target variance of the normalised eigenvalues, > 0.
        sigma_w2, sigma_b2, q0, weights: as in :func:`isometry.residual_spectrum`.

    Raises:
        ValueError: when no a in (0, 1e3] reaches ``sigma0_2`` (each block's normalised
            variance is bounded, e.g. by 1/2 for orthogonal weights and mu_2 = mu_1^2).

    Example:
        >>> a = residual_branch_scale("tanh", 100, sigma0_2=0.25)
        >>> round(residual_mean_field("tanh", 100, branch_scale=a).normalised_variance(), 10)
        0.25
    """
    from scipy.optimize import brentq

    from .spectrum.s_transforms import weight_law

    act = get_activation(activation)
    L = _depth(depth)
    s2 = check_positive("sigma0_2", sigma0_2)
    sw, sb, q_in = _variances(sigma_w2, sigma_b2, q0)
    s1 = weight_law(weights).s1

    def f(log_a: float) -> float:
        try:
            mf = residual_mean_field(act, L, branch_scale=math.exp(log_a), sigma_w2=sw, sigma_b2=sb, q0=q_in)
        except ValueError:
            return math.nan
        return float(np.sum(_block_variances(mf.branch_gain, mf.mu1, mf.mu2, s1))) - s2

    # start where the small-a law puts the root, then scan outwards in log a
    mf0 = residual_mean_field(act, L, branch_scale=0.0, sigma_w2=sw, sigma_b2=sb, q0=q_in)
    a_guess = math.sqrt(s2 / (2.0 * sw * float(np.sum(mf0.mu1))))
    grid = np.log(a_guess) + np.linspace(-3.0, 8.0, 45)
    grid = grid[grid <= math.log(1e3)]
    vals = [f(x) for x in grid]
    for i in range(len(grid) - 1):
        if np.isfinite(vals[i]) and np.isfinite(vals[i + 1]) and vals[i] * vals[i + 1] <= 0:
            root = grid[i] if vals[i] == 0 else brentq(f, grid[i], grid[i + 1], xtol=1e-14, rtol=1e-14)
            if abs(f(root)) > 1e-9 * max(s2, 1.0):  # pragma: no cover - Brent's residual on a continuous f
                raise ValueError(f"residual_branch_scale: no accurate root (residual {f(root):.3g})")
            return float(math.exp(root))
    fin = [v + s2 for v in vals if np.isfinite(v)]
    top = max(fin) if fin else math.nan
    raise ValueError(f"sigma0_2={s2:g} is unreachable for {act.name} with {weight_law(weights).name} weights at depth "
                     f"{L}: branch scales in (0, 1e3] give a normalised variance of at most {top:.6g}")


# ------------------------------------------------------------------------ random networks
def _sampled_weights(weights) -> str:
    from .spectrum.s_transforms import weight_law

    name = weight_law(weights).name
    if name not in ("orthogonal", "gaussian"):
        raise ValueError(f"weights must be 'orthogonal' or 'gaussian' to be sampled, got a custom law {name!r}")
    return name


def _memory(n: int) -> int:
    return 8 * (4 * n * (n + 1)) + 2**17


def _network_jacobian(act: Activation, L: int, n: int, a: float, sw: float, sb: float, q0: float, weights: str,
                      rng: np.random.Generator, form: str = "block") -> tuple[np.ndarray, np.ndarray]:
    """(J, x^L) of one random residual network; ``form`` "block" (x + a phi(W x + b)) or
    "stream" (h + a (W phi(h) + b), started from h^0 ~ N(0, q0))."""
    from .empirical.sampling import _householder_haar

    buf = np.empty((n, n))
    c = np.zeros((n, n + 1), order="F")
    c[:, :n] = np.eye(n)
    c[:, n] = rng.standard_normal(n) * math.sqrt(q0)
    wc = np.empty_like(c, order="F")
    s = math.sqrt(sw)
    for _ in range(L):
        if form == "stream":  # the branch input is phi(h); J's factor is I + a W D
            d = np.asarray(act.dphi(c[:, n]), dtype=float)
            wc[:, :n] = d[:, None] * c[:, :n]
            wc[:, n] = act.phi(c[:, n])
        else:
            wc[...] = c
        if weights == "orthogonal":
            wc = _householder_haar(n, rng, buffer=buf).apply(wc, s)
        else:
            rng.standard_normal(out=buf)
            wc = np.asfortranarray(buf @ wc) * (s / math.sqrt(n))
        b = rng.standard_normal(n) * math.sqrt(sb) if sb > 0 else 0.0
        if form == "stream":
            c[:, :n] += a * wc[:, :n]
            c[:, n] += a * (wc[:, n] + b)
        else:
            h = wc[:, n] + b
            d = np.asarray(act.dphi(h), dtype=float)
            c[:, :n] += a * (d[:, None] * wc[:, :n])
            c[:, n] += a * np.asarray(act.phi(h), dtype=float)
    return c[:, :n], c[:, n]


def residual_eigenvalues(activation, depth: int, width: int, *, branch_scale: float, sigma_w2: float = 1.0,
                         sigma_b2: float = 0.0, q0: float = 1.0, weights="orthogonal", n_samples: int = 1,
                         seed=None, progress: bool | None = None) -> np.ndarray:
    """Eigenvalues of J J^T for ``n_samples`` random residual networks, concatenated (each block sorted ascending).

    The network is x^{l+1} = x^l + a phi(W^l x^l + b^l) with width-N weights
    sqrt(sigma_w2) x Haar orthogonal (``"orthogonal"``) or i.i.d. N(0, sigma_w2 / N)
    (``"gaussian"``), biases N(0, sigma_b2) and input x^0 ~ N(0, q0); J = prod (I + a D^l W^l)
    is accumulated as J <- J + a D (W J) (Haar layers applied as Householder reflectors, one
    GEMM's flops), and its squared singular values returned. The law is
    :func:`isometry.residual_spectrum` with the same arguments.

    Args:
        activation: a registry name, an :class:`isometry.Activation` or a callable phi.
        depth: L in [1, 1e5]; width: N >= 1; branch_scale: a >= 0.
        n_samples: independent networks; network i draws from the i-th child of
            ``np.random.default_rng(seed).spawn(n_samples)``.
        progress: a tqdm bar over networks on stderr (None: only on a terminal).

    Returns:
        ``n_samples * width`` eigenvalues, network i in ``[i * width, (i + 1) * width)``.

    Example:
        >>> lam = residual_eigenvalues("tanh", 4, 100, branch_scale=0.5, seed=0)
        >>> lam.shape
        (100,)
    """
    from scipy.linalg import svdvals
    from tqdm.auto import tqdm

    from .empirical.sampling import _generator

    act = get_activation(activation)
    L = _depth(depth)
    n = check_int("width", width, 1)
    ns = check_int("n_samples", n_samples, 1)
    a = _branch_scale(branch_scale)
    sw, sb, q_in = _variances(sigma_w2, sigma_b2, q0)
    w = _sampled_weights(weights)
    check_fits(_memory(n), f"residual_eigenvalues(width={n})", "use a smaller width", have=available_memory())
    children = _generator(seed).spawn(ns)
    out = np.empty(ns * n)
    for i in tqdm(range(ns), disable=(None if progress is None else not progress), desc="networks", leave=False):
        j, _ = _network_jacobian(act, L, n, a, sw, sb, q_in, w, children[i])
        out[i * n:(i + 1) * n] = np.sort(np.square(svdvals(j, overwrite_a=True, check_finite=False)))
    return out


# ------------------------------------------------------------------------ the stream form (naive law)
def _stream_mean_field(act: Activation, L: int, a: float, sw: float, sb: float, q0: float) -> np.ndarray:
    """q^l of h^{l+1} = h^l + a (W^l phi(h^l) + b^l), h^0 ~ N(0, q0): q^{l+1} = q^l + a^2 (sw E[phi^2] + sb)."""
    moments = _phi_moments(act)
    q = np.empty(L)
    cur = q0
    for l in range(L):
        q[l] = cur
        cur = cur + a * a * (sw * moments(cur)[1] + sb)
    return q


def _stream_moments(activation, depth: int, *, branch_scale: float, sigma_w2: float = 1.0, sigma_b2: float = 0.0,
                    q0: float = 1.0, weights="orthogonal") -> tuple[float, float]:
    """(E[lambda], Var[lambda]) of the naive free product for the stream form h + a (W phi(h) + b).

    Each block I + a W D^l taken free from the others, with D^l at the stream's mean-field
    length q^l; the true variance is larger (module docstring).
    """
    from .spectrum.s_transforms import weight_law

    act = get_activation(activation)
    L = _depth(depth)
    a = _branch_scale(branch_scale)
    sw, sb, q_in = _variances(sigma_w2, sigma_b2, q0)
    q = _stream_mean_field(act, L, a, sw, sb, q_in)
    mu1 = np.asarray(_mu(act, q, 1), float).reshape(L)
    mu2 = np.asarray(_mu(act, q, 2), float).reshape(L)
    c = a * a * sw * mu1
    log_mean = float(np.sum(np.log1p(c)))
    v = float(np.sum(_block_variances(c, mu1, mu2, weight_law(weights).s1)))
    return math.exp(log_mean), math.exp(2 * log_mean) * v


def _stream_eigenvalues(activation, depth: int, width: int, *, branch_scale: float, sigma_w2: float = 1.0,
                        sigma_b2: float = 0.0, q0: float = 1.0, weights="orthogonal", seed=None) -> np.ndarray:
    """Eigenvalues of J J^T of one random network of the stream form (for measuring the naive law's gap)."""
    from scipy.linalg import svdvals

    from .empirical.sampling import _generator

    act = get_activation(activation)
    L = _depth(depth)
    n = check_int("width", width, 1)
    a = _branch_scale(branch_scale)
    sw, sb, q_in = _variances(sigma_w2, sigma_b2, q0)
    j, _ = _network_jacobian(act, L, n, a, sw, sb, q_in, _sampled_weights(weights), _generator(seed), form="stream")
    return np.sort(np.square(svdvals(j, overwrite_a=True, check_finite=False)))


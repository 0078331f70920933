"""Every pair of unit vectors with cosine >= threshold, without a Python double loop.

This is the scalable core of semantic dedup and the diversity filter (``critics/dedup.py``):
``neighbor_pairs`` finds the edges, ``components`` unions them into clusters and
``pick_survivors`` keeps one member per cluster by the stated rule (highest score, then
lowest id).

Methods (``SearchParams.method``):

- ``torch``: exact. Blocked products over the upper triangle (a block of rows against the
  columns from its own start on), a threshold mask on the rows of a tile whose maximum
  reaches the threshold, so memory stays at one ``block_size`` x ``block_size`` tile per
  worker. With ``precision="bf16"`` the tiles are computed in bfloat16 at
  ``threshold - BF16_MARGIN`` and every candidate is re-checked in float32: the bf16 error
  of a dot product of unit vectors is below 0.006, so the result is the float32 result, two
  to three times faster on CPUs with bf16 instructions.
- ``torch_ivf``: approximate, an IVF self-join: spherical k-means cells, each vector probes
  its ``nprobe`` nearest cells, and each cell is one dense product of its probers against
  its members. The arithmetic of a per-query IVF scan, but as tiles: about 4x faster than
  ``faiss_ivf`` at 100k here. Needs no faiss.
- ``faiss_flat``: exact, ``IndexFlatIP.range_search`` (computes both triangles).
- ``faiss_ivf``: approximate, ``IndexIVFFlat`` range search probing ``nprobe`` of ``nlist``
  lists; pairs found from either end are kept, which raises recall.
- ``faiss_hnsw``: approximate, ``IndexHNSWFlat`` k-NN search (``hnsw_k`` neighbours per query,
  kept where >= threshold; a cluster larger than that is still joined, through chains).
  Not range search: ``IndexHNSW.range_search`` aborts the process in faiss 1.15.
- ``auto``: ``torch`` up to ``exact_max`` vectors, ``torch_ivf`` above (exact all-pairs
  grows with n^2: about 40 min for 1M vectors on 2 cores).

Exact methods cost O(n^2 d) arithmetic in BLAS; IVF O(n (nlist + nprobe n/nlist) d), which
is O(n^1.5 d) with nlist ~ sqrt(n); HNSW about O(n log n). Handling the pairs found is
vectorised (numpy/torch), linear in their number.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from distill.errors import ConfigError, DistillError

METHODS = ("auto", "torch", "torch_ivf", "faiss_flat", "faiss_ivf", "faiss_hnsw")
#: bf16 screening margin: input rounding (2 x 2^-9) plus output rounding (2^-9) < 0.006.
BF16_MARGIN = 0.01


@dataclass
class SearchParams:
    """Knobs of the neighbour search; build from a dict with :meth:`from_dict`."""

    method: str = "auto"
    #: torch: rows (and columns) per tile
    block_size: int = 4096
    #: torch: "fp32", "bf16" (screen in bf16, confirm in fp32) or "auto" (bf16 where fast)
    precision: str = "auto"
    #: torch: "cpu", "cuda", or None (cuda when available)
    device: str | None = None
    #: torch on CPU: worker threads; None: torch.get_num_threads()
    threads: int | None = None
    #: auto: largest n searched exactly
    exact_max: int = 200_000
    #: IVF: number of lists (cells); None: sqrt(nprobe n) for torch_ivf, 4 sqrt(n) for faiss_ivf
    nlist: int | None = None
    #: IVF: cells each vector searches (its nearest centroids)
    nprobe: int = 8
    #: IVF: k-means training points per list (sampled) and iterations
    train_per_list: int = 32
    kmeans_iters: int = 8
    hnsw_m: int = 32
    ef_construction: int = 64
    ef_search: int = 64
    #: faiss_hnsw: neighbours asked per query (range search is not used for HNSW)
    hnsw_k: int = 16
    #: faiss: queries per range_search call (bounds the result buffer)
    query_batch: int = 16384
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"dedup method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"dedup precision must be auto, fp32 or bf16, not {self.precision!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "SearchParams":
        d = dict(d or {})
        unknown = d.keys() - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown neighbour-search option(s) {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def have_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_method(n: int, params: SearchParams) -> str:
    if params.method != "auto":
        if params.method.startswith("faiss") and not have_faiss():
            raise DistillError(f"dedup method {params.method} needs faiss: pip install faiss-cpu")
        return params.method
    return "torch_ivf" if n > params.exact_max else "torch"


def neighbor_pairs(vecs: np.ndarray, threshold: float, params: SearchParams | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i, j), i < j, with ``vecs[i] . vecs[j] >= threshold``: two int64 arrays,
    each pair once. ``vecs`` is (n, d) float32, rows L2-normalised."""
    params = params or SearchParams()
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    if vecs.ndim != 2:
        raise ValueError(f"expected an (n, d) matrix, got shape {vecs.shape}")
    n = vecs.shape[0]
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    method = resolve_method(n, params)
    if method == "torch":
        return _torch_pairs(vecs, threshold, params)
    if method == "torch_ivf":
        return _torch_ivf_pairs(vecs, threshold, params)
    return _faiss_pairs(vecs, threshold, method, params)


def _bf16_fast(device: str) -> bool:
    if device != "cpu":
        return True
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read(1 << 16)
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _torch_setup(vecs: np.ndarray, threshold: float, p: SearchParams):
    """(fp32 tensor, tensor to multiply, screening threshold); bf16 screens at a margin."""
    import torch

    device = p.device or ("cuda" if torch.cuda.is_available() else "cpu")
    x = torch.from_numpy(vecs).to(device)
    bf16 = p.precision == "bf16" or (p.precision == "auto" and _bf16_fast(device))
    return x, (x.to(torch.bfloat16) if bf16 else x), (threshold - BF16_MARGIN if bf16 else threshold)


def _pool_map(fn, items: list, device: str, threads: int | None) -> list:
    """``[fn(i) for i in items]`` on ``threads`` Python threads, each running single-threaded
    torch ops. Why: on a shared machine an OpenMP team waits for its slowest (descheduled)
    thread at every op, which costs milliseconds per small op; independent workers do not."""
    import torch

    workers = threads or torch.get_num_threads()
    if device != "cpu" or workers <= 1 or len(items) <= 1:
        return [fn(i) for i in items]
    from concurrent.futures import ThreadPoolExecutor

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as ex:
            return list(ex.map(fn, items))
    finally:
        torch.set_num_threads(prev)


def _hits(tile, screen: float):
    """(row, col) of the entries >= screen, looking only at rows whose maximum reaches it."""
    if float(tile.max()) < screen:  # the common case, and a cheap reduction
        return None
    hot = (tile.amax(1) >= screen).nonzero().squeeze(1)
    ij = (tile[hot] >= screen).nonzero()
    return hot[ij[:, 0]], ij[:, 1]


def _confirm(x, xs, found: list, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the candidate pairs; after bf16 screening, keep those >= threshold in fp32."""
    import torch

    found = [f for f in found if f is not None]
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    r, c = torch.cat([f[0] for f in found]), torch.cat([f[1] for f in found])
    if xs.dtype != x.dtype:
        step = 1 << 20
        keep = torch.cat([(x[r[i : i + step]] * x[c[i : i + step]]).sum(1) >= threshold
                          for i in range(0, r.numel(), step)])
        r, c = r[keep], c[keep]
    return r.cpu().numpy().astype(np.int64), c.cpu().numpy().astype(np.int64)


def _cat(rows: list, cols: list):
    import torch

    return (torch.cat(rows), torch.cat(cols)) if rows else None


def _torch_pairs(vecs: np.ndarray, threshold: float, p: SearchParams) -> tuple[np.ndarray, np.ndarray]:
    import torch

    x, xs, screen = _torch_setup(vecs, threshold, p)
    n, b = x.shape[0], p.block_size

    def row_block(s: int):
        q = xs[s : s + b]
        # one tile buffer per row block: a fresh 64 MB result per product costs as much as it
        buf = torch.empty(len(q) * b, dtype=xs.dtype, device=xs.device)
        rows, cols = [], []
        for c in range(s, n, b):
            k = xs[c : c + b]
            tile = torch.mm(q, k.T, out=buf[: len(q) * len(k)].view(len(q), len(k)))
            if c == s:
                tile.fill_diagonal_(-2.0)
            hit = _hits(tile, screen)
            if hit is None:
                continue
            i, j = hit[0] + s, hit[1] + c
            if c == s:  # the diagonal tile holds both triangles
                i, j = i[i < j], j[i < j]
            rows.append(i)
            cols.append(j)
        return _cat(rows, cols)

    with torch.inference_mode():
        return _confirm(x, xs, _pool_map(row_block, list(range(0, n, b)), xs.device.type, p.threads), threshold)


def _nearest(xs, cent, k: int, p: SearchParams):
    """Indices of the k largest products of each row of xs with the centroids, blockwise."""
    import torch

    parts = _pool_map(lambda s: torch.topk(xs[s : s + p.block_size] @ cent.T, k, dim=1).indices,
                      list(range(0, xs.shape[0], p.block_size)), xs.device.type, p.threads)
    return torch.cat(parts)


def _torch_ivf_pairs(vecs: np.ndarray, threshold: float, p: SearchParams) -> tuple[np.ndarray, np.ndarray]:
    """IVF self-join: spherical k-means cells; each vector is a member of its nearest cell
    and probes its ``nprobe`` nearest; per cell, one product (probers x members). The same
    arithmetic as a per-query IVF scan, done as dense tiles."""
    import torch

    x, xs, screen = _torch_setup(vecs, threshold, p)
    n, d = x.shape
    nlist = p.nlist or int(math.sqrt(p.nprobe * n))
    nlist = max(1, min(nlist, n // 4 or 1))
    nprobe = max(1, min(p.nprobe, nlist))
    gen = torch.Generator().manual_seed(p.seed)
    with torch.inference_mode():
        sample = xs[torch.randperm(n, generator=gen)[: min(n, nlist * p.train_per_list)].to(xs.device)]
        cent = sample[:nlist].clone()
        for _ in range(p.kmeans_iters):
            near = _nearest(sample, cent, 1, p).squeeze(1)
            sums = torch.zeros(nlist, d, device=xs.device).index_add_(0, near, sample.float())
            norm = sums.norm(dim=1, keepdim=True)
            cent = torch.where(norm > 0, sums / norm.clamp_min(1e-12), cent.float()).to(xs.dtype)
        probes = _nearest(xs, cent, nprobe, p)  # (n, nprobe), nearest first
        members = torch.argsort(probes[:, 0], stable=True)
        m_off = [0] + torch.cumsum(torch.bincount(probes[:, 0], minlength=nlist), 0).tolist()
        flat = probes.reshape(-1)
        probers = torch.argsort(flat, stable=True) // nprobe
        q_off = [0] + torch.cumsum(torch.bincount(flat, minlength=nlist), 0).tolist()
        del probes, flat

        def cell(c: int):
            mem = members[m_off[c] : m_off[c + 1]]
            if mem.numel() == 0:
                return None
            xm = xs[mem]
            qs = probers[q_off[c] : q_off[c + 1]]
            rows, cols = [], []
            for s in range(0, qs.numel(), p.block_size):
                q = qs[s : s + p.block_size]
                hit = _hits(xs[q] @ xm.T, screen)
                if hit is None:
                    continue
                i, j = q[hit[0]], mem[hit[1]]
                i, j = torch.minimum(i, j), torch.maximum(i, j)
                rows.append(i[i != j])
                cols.append(j[i != j])
            return _cat(rows, cols)

        r, c = _confirm(x, xs, _pool_map(cell, list(range(nlist)), xs.device.type, p.threads), threshold)
    key = np.unique(r * n + c)  # found from both ends
    return key // n, key % n


def _faiss_index(vecs: np.ndarray, method: str, p: SearchParams):
    import faiss

    n, d = vecs.shape
    if method == "faiss_flat":
        index = faiss.IndexFlatIP(d)
    elif method == "faiss_hnsw":
        index = faiss.IndexHNSWFlat(d, p.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = p.ef_construction
        index.hnsw.efSearch = p.ef_search
    else:
        nlist = p.nlist or max(1, min(n // 8, int(4 * math.sqrt(n))))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = p.seed
        index.cp.niter = 10
        index.cp.spherical = True
        index.cp.max_points_per_centroid = p.train_per_list
        index.cp.min_points_per_centroid = 1
        m = min(n, nlist * p.train_per_list)
        sample = vecs if m == n else vecs[np.sort(np.random.default_rng(p.seed).choice(n, m, replace=False))]
        index.train(sample)
        index.nprobe = min(p.nprobe, nlist)
    index.add(vecs)
    return index


def _faiss_pairs(vecs: np.ndarray, threshold: float, method: str, p: SearchParams
                 ) -> tuple[np.ndarray, np.ndarray]:
    index = _faiss_index(vecs, method, p)
    n = vecs.shape[0]
    # faiss keeps inner products strictly above the radius; the exact >= is applied below
    radius = float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))
    k = min(n, max(p.hnsw_k, 2))
    rows, cols = [], []
    for s in range(0, n, p.query_batch):
        if method == "faiss_hnsw":  # HNSW range_search aborts the process in faiss 1.15: k-NN instead
            sims, ids = index.search(vecs[s : s + p.query_batch], k)
            q = np.repeat(np.arange(s, s + len(sims), dtype=np.int64), k)
            sims, ids = sims.ravel(), ids.ravel().astype(np.int64)
        else:
            lims, sims, ids = index.range_search(vecs[s : s + p.query_batch], radius)
            q = np.repeat(np.arange(s, s + len(lims) - 1, dtype=np.int64), np.diff(lims).astype(np.int64))
            ids = ids.astype(np.int64)
        ok = (sims >= threshold) & (ids != q) & (ids >= 0)
        rows.append(np.minimum(q[ok], ids[ok]))
        cols.append(np.maximum(q[ok], ids[ok]))
    r, c = np.concatenate(rows), np.concatenate(cols)
    key = np.unique(r * n + c)  # each pair once, found from either end
    return key // n, key % n


def components(n: int, rows: np.ndarray, cols: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components of the undirected graph on ``n`` nodes: (count, label per node)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    g = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n)).tocsr()
    count, labels = connected_components(g, directed=False)
    return int(count), labels.astype(np.int64)


def id_ranks(ids: list[str]) -> np.ndarray:
    """Rank of each id in string order (0 = lowest)."""
    order = np.argsort(np.asarray(ids, dtype=str), kind="stable")
    ranks = np.empty(len(ids), dtype=np.int64)
    ranks[order] = np.arange(len(ids))
    return ranks


def pick_survivors(labels: np.ndarray, scores: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """For each element, the index of its cluster's survivor: the highest score, then the
    lowest rank (id). NaN scores count as missing (-inf)."""
    n = len(labels)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    s = np.where(np.isnan(scores), -np.inf, scores)
    order = np.lexsort((ranks, -s, labels))
    lab = labels[order]
    first = np.ones(n, dtype=bool)
    first[1:] = lab[1:] != lab[:-1]
    best = np.full(int(labels.max()) + 1, -1, dtype=np.int64)
    best[lab[first]] = order[first]
    return best[labels]

"""XGBoost tree ensembles evaluated with numpy: raw margins and exact TreeSHAP.

A bundle stores its XGBoost base as a booster in XGBoost's own model format (UBJSON, or
JSON). Predicting and explaining with it here needs no xgboost, and so none of the
scikit-learn, scipy and pandas that importing xgboost pulls in (about a second, cold):
:func:`read_ubjson` decodes the file and :class:`TreeEnsemble` evaluates the trees the
way XGBoost's CPU predictor does.

- Margins: a row goes left at a node when ``x < split_condition`` (both float32); a
  missing value (NaN) follows the node's default direction. Leaf values are added in
  float32, tree by tree from the base margin, as XGBoost adds them, so margins agree
  with ``output_margin=True`` to float32 rounding (in practice, bit for bit).
- Contributions: path-dependent TreeSHAP (Lundberg, Erion and Lee 2018, "Consistent
  Individualized Feature Attribution for Tree Ensembles", Algorithm 2) with node covers
  = the hessian sums XGBoost records, i.e. ``pred_contribs=True``.

TreeSHAP is computed per leaf instead of by recursion, so every leaf of every tree is
handled by the same few array operations. A leaf's share of the SHAP value of feature
``i`` depends only on the distinct features ``F`` on its root path (``m = |F|``), each
with a zero fraction ``z_j`` (product of the cover ratios child/parent of the splits on
``j`` along the path) and a one fraction ``o_j`` (1 when the row takes every split on
``j`` towards the leaf, else 0)::

    phi_i += v * (o_i - z_i) * sum_{S in F - {i}} |S|! (m - |S| - 1)! / m!
                               * prod_{j in S} o_j * prod_{j in F - S - {i}} z_j

which is what Algorithm 2's EXTEND and UNWIND accumulate along a path (a repeated
feature's fractions multiply, as its UNWIND-then-EXTEND does). The inner sum is the
polynomial ``prod_{j != i} (z_j + o_j t)`` with its coefficient of ``t^k`` weighted by
``k! (m - k - 1)! / m!``. The bias column is the cover-weighted mean of the leaf values
(each tree's expected value) plus the base margin.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from postergenre.errors import ModelError

# -- UBJSON ------------------------------------------------------------------------------
#: Numeric UBJSON markers (big-endian): scalar decoder and dtype of typed arrays.
_NUMBERS: dict[int, tuple[Any, np.dtype[Any]]] = {
    ord(m): (struct.Struct(">" + s).unpack_from, np.dtype(">" + d))
    for m, s, d in (
        ("i", "b", "i1"),
        ("U", "B", "u1"),
        ("I", "h", "i2"),
        ("l", "i", "i4"),
        ("L", "q", "i8"),
        ("d", "f", "f4"),
        ("D", "d", "f8"),
    )
}
_INT64 = ord("L")
_INTEGERS = frozenset(ord(m) for m in "iUIlL")
_NOOP, _NULL, _TRUE, _FALSE = ord("N"), ord("Z"), ord("T"), ord("F")
_CHAR, _STRING, _HIGH = ord("C"), ord("S"), ord("H")
_ARRAY, _ARRAY_END, _OBJECT, _OBJECT_END = ord("["), ord("]"), ord("{"), ord("}")
_TYPE, _COUNT = ord("$"), ord("#")


def read_ubjson(data: bytes) -> Any:
    """Decode one Universal Binary JSON value (draft 12, optimised containers included).

    Typed arrays of numbers (``[$d#...``, how XGBoost writes every per-node array)
    become numpy arrays (big-endian, as stored: read-only views of ``data``, no copy);
    everything else becomes dict, list, str, int, float, bool or None, as
    :func:`json.loads` would give. Raises ModelError on malformed input.
    """
    buf = bytes(data)
    unpack_int64 = _NUMBERS[_INT64][0]

    def length(pos: int) -> tuple[int, int]:
        m = buf[pos]
        while m == _NOOP:
            pos += 1
            m = buf[pos]
        if m == _INT64:  # what XGBoost writes
            n = unpack_int64(buf, pos + 1)[0]
            pos += 9
        elif m in _INTEGERS:
            unpack, dtype = _NUMBERS[m]
            n = unpack(buf, pos + 1)[0]
            pos += 1 + dtype.itemsize
        else:
            raise ValueError(f"expected an integer length, got marker {chr(m)!r} at byte {pos}")
        if n < 0 or n > len(buf):
            # No count can exceed the data's size; this also bounds payload-less arrays.
            raise ValueError(f"length {n} at byte {pos} does not fit the data")
        return n, pos

    def text(pos: int) -> tuple[str, int]:
        if buf[pos] == _INT64:
            n = unpack_int64(buf, pos + 1)[0]
            pos += 9
            if 0 <= n and pos + n <= len(buf):
                return buf[pos : pos + n].decode("utf-8"), pos + n
            pos -= 9
        n, pos = length(pos)
        if pos + n > len(buf):
            raise ValueError(f"text of {n} bytes at byte {pos} runs past the end")
        return buf[pos : pos + n].decode("utf-8"), pos + n

    def header(pos: int) -> tuple[int | None, int | None, int]:
        """(element marker, count, position after) of a container's optional header."""
        m = buf[pos]
        if m == _TYPE:
            kind = buf[pos + 1]
            if buf[pos + 2] != _COUNT:
                raise ValueError(f"a typed container needs a count (byte {pos})")
            count, pos = length(pos + 3)
            return kind, count, pos
        if m == _COUNT:
            count, pos = length(pos + 1)
            return None, count, pos
        return None, None, pos

    def value(m: int, pos: int) -> tuple[Any, int]:
        """The value whose marker ``m`` ends just before ``pos``."""
        if m == _OBJECT:
            return obj(pos)
        if m == _ARRAY:
            return array(pos)
        if m in _NUMBERS:
            unpack, dtype = _NUMBERS[m]
            return unpack(buf, pos)[0], pos + dtype.itemsize
        if m == _STRING:
            return text(pos)
        if m == _NULL:
            return None, pos
        if m == _TRUE:
            return True, pos
        if m == _FALSE:
            return False, pos
        if m == _CHAR:
            return chr(buf[pos]), pos + 1
        if m == _HIGH:
            digits, pos = text(pos)
            try:
                return int(digits), pos
            except ValueError:
                return float(digits), pos
        raise ValueError(f"unknown marker {chr(m)!r} at byte {pos - 1}")

    def marked(pos: int) -> tuple[Any, int]:
        m = buf[pos]
        while m == _NOOP:
            pos += 1
            m = buf[pos]
        return value(m, pos + 1)

    def array(pos: int) -> tuple[Any, int]:
        kind, count, pos = header(pos)
        if count is None:
            out: list[Any] = []
            while True:
                m = buf[pos]
                if m == _ARRAY_END:
                    return out, pos + 1
                if m != _NOOP:
                    item, pos = value(m, pos + 1)
                    out.append(item)
                else:
                    pos += 1
        if kind is None:
            items = []
            for _ in range(count):
                item, pos = marked(pos)
                items.append(item)
            return items, pos
        if kind in _NUMBERS:
            dtype = _NUMBERS[kind][1]
            return np.frombuffer(buf, dtype, count, pos), pos + count * dtype.itemsize
        items = []
        for _ in range(count):
            item, pos = value(kind, pos)
            items.append(item)
        return items, pos

    def obj(pos: int) -> tuple[dict[str, Any], int]:
        kind, count, pos = header(pos)
        out: dict[str, Any] = {}
        if count is None:
            while True:
                m = buf[pos]
                if m == _OBJECT_END:
                    return out, pos + 1
                if m == _NOOP:
                    pos += 1
                    continue
                if m == _INT64:  # the key's length, as XGBoost writes it
                    n = unpack_int64(buf, pos + 1)[0]
                    pos += 9
                    if n < 0 or pos + n > len(buf):
                        raise ValueError(f"key of {n} bytes at byte {pos} runs past the end")
                    key = buf[pos : pos + n].decode("utf-8")
                    pos += n
                else:
                    key, pos = text(pos)
                # Fast path for what XGBoost writes most: a typed array, int64 count.
                if (
                    buf[pos] == _ARRAY
                    and buf[pos + 1] == _TYPE
                    and buf[pos + 2] in _NUMBERS
                    and buf[pos + 3] == _COUNT
                    and buf[pos + 4] == _INT64
                ):
                    dtype = _NUMBERS[buf[pos + 2]][1]
                    n = unpack_int64(buf, pos + 5)[0]
                    if n < 0:
                        raise ValueError(f"negative count at byte {pos + 5}")
                    out[key] = np.frombuffer(buf, dtype, n, pos + 13)
                    pos += 13 + n * dtype.itemsize
                else:
                    out[key], pos = marked(pos)
        for _ in range(count):
            key, pos = text(pos)
            if kind is None:
                out[key], pos = marked(pos)
            else:
                out[key], pos = value(kind, pos)
        return out, pos

    try:
        result, end = marked(0)
    except (IndexError, ValueError, struct.error) as exc:
        # IndexError / struct.error: the data ended inside a value.
        raise ModelError(f"UBJSON: malformed or truncated data ({exc})") from None
    except RecursionError:
        raise ModelError("UBJSON: containers nested too deep") from None
    if end != len(buf):
        raise ModelError(f"UBJSON: {len(buf) - end} bytes after the value")
    return result


def read_model(raw: bytes) -> Any:
    """An XGBoost model file (JSON or UBJSON, told apart by content) as plain data."""
    head = bytes(raw[:2])
    if head[:1] == b"{" and head[1:2] in (b'"', b"}", b" ", b"\n", b"\r", b"\t"):
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ModelError(f"XGBoost JSON model unreadable ({exc})") from None
    return read_ubjson(raw)


# -- the ensemble ------------------------------------------------------------------------
#: Objectives whose base_score is a probability (the margin is its log-odds).
_LOGISTIC = frozenset({"binary:logistic", "reg:logistic"})
#: Rows are evaluated in chunks of at most this many (row, tree) cells for traversal and
#: (row, path step, leaf) cells for TreeSHAP: bounded memory for any batch, and chunks
#: small enough to stay in cache (measured on the shipped model: 2^16 traverses 1.8x
#: faster than 2^22; 2^18 explains 1.6x faster than 2^21).
_TRAVERSE_CELLS = 1 << 16
_SHAP_CELLS = 1 << 18


def _scalars(text: Any) -> np.ndarray:
    """XGBoost writes base_score as "5E-1" or (one per target) "[5E-1,2.5E-1]"."""
    parts = str(text).strip().strip("[]").split(",")
    return np.array([float(p) for p in parts if p.strip()], dtype=np.float64)


def _shapley_table(depth: int) -> np.ndarray:
    """(depth + 1, depth): [m, k] = k! (m - k - 1)! / m!, the Shapley weight of one
    subset of k of the other m - 1 features of a path with m distinct features."""
    table = np.zeros((depth + 1, max(depth, 1)), dtype=np.float64)
    for m in range(1, depth + 1):
        for k in range(m):
            table[m, k] = math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m)
    return table


@dataclass(frozen=True, eq=False)
class TreeEnsemble:
    """An XGBoost ``gbtree`` model (numerical splits, scalar leaves) as numpy arrays.

    Missing values: rows are widened to ``[x with NaN -> -inf, x with NaN -> +inf]``
    (2c columns, see :meth:`widen`) and a split reads the first copy of its feature
    where it sends missing values left, the second where right. Then ``x < threshold``
    alone decides every split, NaN included.

    Traversal, over the nodes of all trees numbered globally: ``column`` (of the
    widened row) and ``threshold`` (float32, NaN at leaves) of each split,
    ``children`` (2N,): left then right child of each node (a leaf's are itself),
    ``value`` (float32 leaf value, 0 inside); ``roots`` (T,) root node of each tree;
    ``group_trees``: per output, its trees in model order; ``depth``: longest path.

    TreeSHAP, one column per reachable leaf (L leaves), D = ``depth`` rows: a leaf's
    root path as steps from the leaf up (``step_column``, ``step_threshold`` of the
    split, ``step_left``: the path goes left there, ``step_slot``: which distinct
    feature of the path the step splits on, -1 past the root); its distinct features
    as slots (``slot_feature``, -1 for no slot;
    ``slot_zero``: zero fraction, 1 for no slot; ``slot_coef[k]``: Shapley weight of
    ``t^k`` for the path's number of distinct features); ``leaf_value`` (L,) float64,
    ``leaf_group`` (L,) output; ``expected`` (G,): sum of the trees' cover-weighted
    mean leaf values, per output.
    """

    n_features: int
    n_groups: int
    base_score: np.ndarray
    column: np.ndarray
    threshold: np.ndarray
    children: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    group_trees: tuple[np.ndarray, ...]
    depth: int
    step_column: np.ndarray
    step_threshold: np.ndarray
    step_left: np.ndarray
    step_slot: np.ndarray
    slot_feature: np.ndarray
    slot_zero: np.ndarray
    slot_coef: np.ndarray
    leaf_value: np.ndarray
    leaf_group: np.ndarray
    expected: np.ndarray

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_bytes(cls, raw: bytes) -> TreeEnsemble:
        """From a booster's ``save_raw("ubj")`` or ``save_raw("json")`` bytes."""
        return cls.from_model(read_model(raw))

    @classmethod
    def from_model(cls, model: Mapping[str, Any]) -> TreeEnsemble:
        """From an XGBoost model as plain data (its JSON schema, parsed)."""
        try:
            learner = model["learner"]
            booster = learner["gradient_booster"]
            kind = str(booster.get("name", "gbtree"))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"XGBoost model: damaged or of an unknown layout ({exc!r})") from None
        if kind != "gbtree":
            raise ModelError(f"XGBoost model: booster {kind!r} is not supported (only gbtree)")
        try:
            params = learner["learner_model_param"]
            objective = str(learner.get("objective", {}).get("name", ""))
            trees = list(booster["model"]["trees"])
            tree_info = np.asarray(booster["model"]["tree_info"], dtype=np.int64).reshape(-1)
            n_features = int(params["num_feature"])
            n_groups = max(1, int(params.get("num_target", 1)), int(params.get("num_class", 0)))
            base_score = _scalars(params.get("base_score", "0"))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"XGBoost model: damaged or of an unknown layout ({exc!r})") from None
        if len(tree_info) != len(trees) or (
            len(tree_info) and (tree_info.min() < 0 or tree_info.max() >= n_groups)
        ):
            raise ModelError("XGBoost model: tree_info does not fit its trees and outputs")
        if len(base_score) not in (1, n_groups):
            raise ModelError(f"XGBoost model: {len(base_score)} base scores for {n_groups} outputs")
        if objective in _LOGISTIC:
            # Stored as a probability; the margin starts from its log-odds.
            p = np.clip(base_score, 1e-16, 1.0 - 1e-16)
            base_score = np.log(p / (1.0 - p))
        base = np.broadcast_to(base_score, (n_groups,)).astype(np.float32)
        return cls._build(trees, tree_info, n_features, n_groups, base)

    @classmethod
    def _build(
        cls,
        trees: list[Mapping[str, Any]],
        tree_info: np.ndarray,
        n_features: int,
        n_groups: int,
        base_score: np.ndarray,
    ) -> TreeEnsemble:
        sizes_of: dict[str, list[int]] = {}

        def node_field(key: str, dtype: Any) -> np.ndarray:
            # One concatenation per field, not a conversion per tree: a model has
            # thousands of trees.
            parts = [t[key] for t in trees]
            sizes_of[key] = [len(p) for p in parts]
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        try:
            # Before the node arrays: a vector-leaf tree lacks some of them (sum_hessian,
            # in the XGBoost versions before 3.2), and deserves this message, not "damaged".
            vector_leaves = any(
                int(t.get("tree_param", {}).get("size_leaf_vector", 1)) > 1 for t in trees
            )
            if vector_leaves:
                raise ModelError(
                    "XGBoost model: vector leaves (multi_output_tree) are not supported"
                )
            lc = node_field("left_children", np.int64)
            rc = node_field("right_children", np.int64)
            split_feature = node_field("split_indices", np.int64)
            cond = node_field("split_conditions", np.float32)
            default_left = node_field("default_left", bool)
            # float32 first, as XGBoost holds them (JSON text would give other float64s).
            covers = node_field("sum_hessian", np.float32).astype(np.float64)
            split_type = np.concatenate([t.get("split_type", []) for t in trees] or [[]])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"XGBoost model: damaged tree ({exc!r})") from None
        if np.any(np.asarray(split_type, dtype=np.int64) != 0):
            raise ModelError("XGBoost model: categorical splits are not supported")
        sizes = np.array(sizes_of["left_children"], dtype=np.int64)
        for name, per_tree in sizes_of.items():
            if per_tree != sizes_of["left_children"]:
                raise ModelError(f"XGBoost model: {name} does not have one entry per node")
        if np.any(sizes < 1):
            raise ModelError("XGBoost model: a tree without nodes")
        T = len(trees)
        roots = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if T else sizes
        N = int(sizes.sum())
        node = np.arange(N, dtype=np.int64)
        offset = np.repeat(roots, sizes)
        size = np.repeat(sizes, sizes)
        internal = lc >= 0
        if np.any(internal & ((rc < 0) | (lc >= size) | (rc >= size))):
            raise ModelError("XGBoost model: a child index outside its tree")
        if np.any(internal & ((split_feature < 0) | (split_feature >= n_features))):
            raise ModelError("XGBoost model: a split on a feature the model does not have")
        left = np.where(internal, lc + offset, node)
        right = np.where(internal, rc + offset, node)
        feature = np.where(internal, split_feature, 0)
        column = np.where(default_left | ~internal, feature, feature + n_features)
        threshold = np.where(internal, cond, np.float32(np.nan)).astype(np.float32)
        value = np.where(internal, np.float32(0.0), cond).astype(np.float32)

        # Down from the roots a level at a time: parents, reachability (XGBoost keeps
        # pruned nodes in the arrays, unreachable) and depth.
        parent = np.full(N, -1, dtype=np.int64)
        reached = np.zeros(N, dtype=bool)
        reached[roots] = True
        level, depth = roots, 0
        while True:
            level = level[internal[level]]
            if not len(level):
                break
            kids = np.concatenate([left[level], right[level]])
            parents = np.concatenate([level, level])
            parent[kids] = parents
            if np.any(reached[kids]) or np.any(parent[kids] != parents):
                # A node reached twice (a cycle, or two parents): not a tree.
                raise ModelError("XGBoost model: a tree whose nodes do not form a tree")
            reached[kids] = True
            level, depth = kids, depth + 1
        leaves = np.nonzero(reached & ~internal)[0]
        tree_of = np.repeat(np.arange(T), sizes)
        leaf_group = tree_info[tree_of[leaves]]

        # Each leaf's root path, step p = the (p + 1)-th split above the leaf.
        D, L = depth, len(leaves)
        step_node = np.zeros((D, L), dtype=np.int64)
        step_valid = np.zeros((D, L), dtype=bool)
        step_left = np.zeros((D, L), dtype=bool)
        step_zero = np.ones((D, L), dtype=np.float64)
        cur = leaves.copy()
        for p in range(D):
            up = parent[cur]
            ok = up >= 0
            at = np.where(ok, up, 0)
            step_node[p], step_valid[p] = at, ok
            step_left[p] = ok & (left[at] == cur)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.nan_to_num(covers[cur] / covers[at], nan=0.0, posinf=0.0)
            step_zero[p] = np.where(ok, ratio, 1.0)
            cur = np.where(ok, up, cur)
        step_feature = np.where(step_valid, feature[step_node], -1)

        # A path's distinct features ("slots", numbered by first appearance from the leaf
        # up); a feature split on twice multiplies its fractions.
        step_slot = np.full((D, L), -1, dtype=np.int64)
        slot_feature = np.full((D, L), -1, dtype=np.int64)
        slot_zero = np.ones((D, L), dtype=np.float64)
        n_slots = np.zeros(L, dtype=np.int64)
        for p in range(D):
            slot = np.full(L, -1, dtype=np.int64)
            for q in range(p):
                slot = np.where(
                    (slot < 0) & (step_feature[q] == step_feature[p]), step_slot[q], slot
                )
            new = step_valid[p] & (slot < 0)
            slot = np.where(new, n_slots, slot)
            ok = step_valid[p]
            step_slot[p] = np.where(ok, slot, -1)
            cols = np.nonzero(ok)[0]
            slot_feature[slot[cols], cols] = step_feature[p, cols]
            slot_zero[slot[cols], cols] *= step_zero[p, cols]
            n_slots += new
        slot_coef = _shapley_table(D)[n_slots].T[:D].copy()

        leaf_value = value[leaves].astype(np.float64)
        expected = np.bincount(
            leaf_group, weights=leaf_value * np.prod(step_zero, axis=0), minlength=n_groups
        )
        return cls(
            n_features=n_features,
            n_groups=n_groups,
            base_score=base_score,
            column=column.astype(np.int32),
            threshold=threshold,
            children=np.stack([left, right], axis=1).ravel().astype(np.int32),
            value=value,
            roots=roots,
            group_trees=tuple(np.nonzero(tree_info == g)[0] for g in range(n_groups)),
            depth=D,
            step_column=np.where(step_valid, column[step_node], 0).astype(np.int32),
            step_threshold=threshold[step_node],
            step_left=step_left,
            step_slot=step_slot,
            slot_feature=slot_feature,
            slot_zero=slot_zero,
            slot_coef=slot_coef,
            leaf_value=leaf_value,
            leaf_group=leaf_group,
            expected=expected,
        )

    # -- evaluation --------------------------------------------------------------------
    def _check(self, X: Any) -> np.ndarray:
        arr = np.asarray(X, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != self.n_features:
            raise ValueError(f"expected X of shape (n, {self.n_features}), got shape {np.shape(X)}")
        return arr

    def _base(self, n: int, base_margin: Any) -> np.ndarray:
        """(n, G) float32 starting margins: ``base_margin`` (G,) or (n, G) if given (it
        replaces base_score, as in XGBoost), else base_score."""
        if base_margin is None:
            return np.tile(self.base_score, (n, 1))
        bm = np.asarray(base_margin, dtype=np.float32)
        try:
            return np.broadcast_to(bm, (n, self.n_groups)).copy()
        except ValueError:
            raise ValueError(
                f"expected base_margin of shape ({self.n_groups},) or (n, {self.n_groups}), "
                f"got {bm.shape}"
            ) from None

    def widen(self, X: np.ndarray) -> np.ndarray:
        """(n, c) float32 -> (n, 2c): NaN as -inf (read by splits that send missing
        values left), then NaN as +inf (splits that send them right)."""
        missing = np.isnan(X)
        return np.concatenate(
            [np.where(missing, -np.inf, X), np.where(missing, np.inf, X)], axis=1
        ).astype(np.float32)

    def leaves(self, X: Any) -> np.ndarray:
        """(n, c) -> (n, T) global node index of the leaf each row reaches in each tree."""
        X = self._check(X)
        T = len(self.roots)
        out = np.empty((len(X), T), dtype=np.int32)
        step = max(1, _TRAVERSE_CELLS // max(1, T))
        for start in range(0, len(X), step):
            wide = self.widen(X[start : start + step])
            flat = wide.ravel()
            row_start = (np.arange(len(wide), dtype=np.intp) * wide.shape[1])[:, None]
            node = np.broadcast_to(self.roots.astype(np.int32), (len(wide), T)).copy()
            for _ in range(self.depth):
                x = flat.take(row_start + self.column.take(node))
                go_right = x >= self.threshold.take(node)  # never NaN: widened
                node = self.children.take(2 * node + go_right)
            out[start : start + step] = node
        return out

    def margin(self, X: Any, base_margin: Any = None) -> np.ndarray:
        """(n, c) -> (n, G) float32 raw margins (XGBoost's ``output_margin=True``)."""
        X = self._check(X)
        out = self._base(len(X), base_margin)
        values = self.value[self.leaves(X)]
        for g, trees in enumerate(self.group_trees):
            # Sequential float32 sums in model order, as XGBoost adds its trees.
            seq = np.concatenate([out[:, g : g + 1], values[:, trees]], axis=1)
            out[:, g] = np.cumsum(seq, axis=1, dtype=np.float32)[:, -1]
        return out

    def contributions(self, X: Any, base_margin: Any = None) -> np.ndarray:
        """(n, c) -> (n, G, c + 1) float64 exact TreeSHAP values, bias (expected value
        plus base margin) last; they sum to the margin (XGBoost's ``pred_contribs``)."""
        X = self._check(X)
        n, G, c1 = len(X), self.n_groups, self.n_features + 1
        out = np.zeros((n, G, c1), dtype=np.float64)
        out[:, :, -1] = self._base(n, base_margin) + self.expected
        D, L = self.depth, len(self.leaf_value)
        if not (D and L):
            return out
        present = self.slot_feature >= 0
        cell = self.leaf_group[None, :] * c1 + np.where(present, self.slot_feature, 0)
        step = max(1, _SHAP_CELLS // (D * L))
        for start in range(0, n, step):
            Xc = X[start : start + step]
            phi = self._leaf_shap(Xc, present)  # (D, rows, L)
            index = np.arange(len(Xc))[None, :, None] * (G * c1) + cell[:, None, :]
            parts = np.bincount(index.ravel(), weights=phi.ravel(), minlength=len(Xc) * G * c1)
            out[start : start + step] += parts.reshape(len(Xc), G, c1)
        return out

    def _leaf_shap(self, X: np.ndarray, present: np.ndarray) -> np.ndarray:
        """(rows, c) float32 -> (D, rows, L): each leaf's share of the SHAP value of each
        of its path's distinct features (see the module docstring)."""
        D = self.depth
        x = self.widen(X)[:, self.step_column]  # (rows, D, L)
        follows = (x < self.step_threshold) == self.step_left
        one_b = np.broadcast_to(present[:, None, :], (D, len(X), present.shape[1])).copy()
        for p in range(D):
            for s in range(p + 1):
                one_b[s] &= follows[:, p] | (self.step_slot[p] != s)
        one = one_b.astype(np.float64)
        zero = self.slot_zero
        phi = np.empty_like(one)
        for i in range(D):
            # Coefficients of prod_{j != i} (zero_j + one_j t), lowest power first.
            poly: list[np.ndarray] = [np.ones(one.shape[1:])]
            for j in range(D):
                if j == i:
                    continue
                grown = [poly[0] * zero[j]]
                grown += [poly[k] * zero[j] + poly[k - 1] * one[j] for k in range(1, len(poly))]
                grown.append(poly[-1] * one[j])
                poly = grown
            weight = sum((self.slot_coef[k] * poly[k] for k in range(D)), np.zeros(one.shape[1:]))
            phi[i] = weight * (one[i] - zero[i])
        phi *= self.leaf_value
        phi *= present[:, None, :]
        return phi

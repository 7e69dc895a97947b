"""The baton: the one file that travels from site to site.

Layout (one safetensors file, never pickle):

* tensors ``model/<name>``: the network's state dict (float32);
* tensors ``strategy/<name>``: the strategy's carried state (EWC importances and anchors, the replay generator);
  no other tensor name is accepted, so a baton structurally cannot carry a dataset;
* header metadata ``format`` (``"medzoo.baton/1"``), ``baton`` (JSON: task, architecture, strategy name and
  settings, the ledger) and ``integrity`` (JSON: ``sha256`` over the content, optional ``hmac_sha256``).

Integrity: the content hash covers the metadata JSON and every tensor's name, dtype, shape and bytes. Every
ledger entry carries the hash of the weights it left behind and the hash of the previous entry (a chain), so an
edited or removed entry breaks the chain. With a key file the consortium shares, the content hash is signed with
HMAC-SHA256. Reading refuses (:class:`~medzoo.errors.BatonError`) a truncated, edited or foreign file, a baton
for another task, one from a newer format, and a wrong key. Writing is atomic: an error never leaves a partial
file and never replaces an existing one.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from medzoo.errors import BatonError

FORMAT = "medzoo.baton/1"
FORMAT_VERSION = 1
MODEL_PREFIX = "model/"
STRATEGY_PREFIX = "strategy/"
GENESIS = "0" * 64


def _canon(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def tensors_sha256(tensors: Mapping[str, Tensor]) -> str:
    """sha256 over tensors' names, dtypes, shapes and raw bytes, in name order."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().to("cpu").contiguous()
        h.update(_canon([k, str(t.dtype), list(t.shape)]))
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The hash of a ledger entry: sha256 of its canonical JSON without the ``hash`` field."""
    return hashlib.sha256(_canon({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _key_candidates(raw: bytes) -> list[bytes]:
    """The key a file's bytes hold, then the older reading (surrounding whitespace stripped only), if it differs.

    A hex key may be split over lines (``xxd -p`` writes 60 characters a line) and a line-ending conversion in
    transit (LF -> CRLF) must not change it, so all whitespace inside a key made only of hex digits is removed.
    Any other key keeps its inner bytes; only surrounding whitespace is stripped.
    """
    legacy = raw.strip()
    compact = re.sub(rb"\s+", b"", raw)
    key = compact if compact and _HEX.fullmatch(compact) else legacy
    return [key] if key == legacy else [key, legacy]


_HEX = re.compile(rb"[0-9a-fA-F]+")


def _read_key_candidates(key_file: str | Path | None) -> list[bytes] | None:
    if key_file is None:
        return None
    p = Path(key_file)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise BatonError(f"{p}: cannot read the key file ({e})") from e
    keys = _key_candidates(raw)
    if len(keys[0]) < 16:
        raise BatonError(f"{p}: key is too short ({len(keys[0])} bytes); use at least 16 random bytes, e.g. "
                         "`python -c 'import secrets; print(secrets.token_hex(32))' > relay.key`")
    return keys


def read_key(key_file: str | Path | None) -> bytes | None:
    """The shared key from ``key_file``, or None.

    Surrounding whitespace is stripped; a key made of hex digits also loses any whitespace inside it (line
    breaks from ``xxd -p``, CR added by a line-ending conversion in transit), so it reads the same everywhere.

    Raises:
        BatonError: unreadable key file, or a key shorter than 16 bytes.
    """
    keys = _read_key_candidates(key_file)
    return None if keys is None else keys[0]


def _finite(obj: Any) -> Any:
    """``obj`` with every NaN/Infinity float replaced by None (JSON null): baton JSON stays strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


@dataclass
class Baton:
    """A baton in memory. Build one with :meth:`new`, read one with :meth:`read`, write with :meth:`write`.

    Attributes:
        task: registry name of the task.
        architecture: builder arguments of the network.
        strategy: strategy name; ``strategy_settings`` its settings (fixed for the whole relay).
        model_state: the network's state dict.
        strategy_state: the strategy's tensors.
        ledger: the chained ledger entries, oldest first.
        signed: whether the file read carried an HMAC signature; ``signature_checked`` whether a key checked it.
    """

    task: str
    architecture: dict[str, Any]
    strategy: str
    strategy_settings: dict[str, Any]
    model_state: dict[str, Tensor]
    strategy_state: dict[str, Tensor] = field(default_factory=dict)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    format: str = FORMAT
    signed: bool = False
    signature_checked: bool = False
    path: Path | None = None

    # -- derived facts --------------------------------------------------------------------------------
    @property
    def training_entries(self) -> list[dict[str, Any]]:
        return [e for e in self.ledger if e.get("kind") == "train"]

    @property
    def n_seen(self) -> int:
        """Training samples seen at all sites so far."""
        return sum(int(e.get("n_samples", 0)) for e in self.training_entries)

    @property
    def sites(self) -> list[str]:
        """Training sites in order."""
        return [str(e["site"]) for e in self.training_entries]

    @property
    def weights_sha256(self) -> str:
        return tensors_sha256(self.model_state)

    def meta(self) -> dict[str, Any]:
        return {"format": self.format, "task": self.task, "architecture": self.architecture,
                "strategy": {"name": self.strategy, "settings": self.strategy_settings}, "ledger": self.ledger}

    def content_sha256(self) -> str:
        h = hashlib.sha256(_canon(self.meta()))
        h.update(tensors_sha256(self.all_tensors()).encode())
        return h.hexdigest()

    def all_tensors(self) -> dict[str, Tensor]:
        out = {MODEL_PREFIX + k: v for k, v in self.model_state.items()}
        out.update({STRATEGY_PREFIX + k: v for k, v in self.strategy_state.items()})
        return out

    # -- building ------------------------------------------------------------------------------------------
    @classmethod
    def new(cls, task: str, architecture: Mapping[str, Any], strategy: str, strategy_settings: Mapping[str, Any],
            model_state: Mapping[str, Tensor], *, init: str | None = None) -> Baton:
        b = cls(task=task, architecture=dict(architecture), strategy=strategy,
                strategy_settings=dict(strategy_settings), model_state=_cpu32(model_state))
        b.append({"kind": "start", "site": None, "init": init or "random", "created": now()})
        return b

    def append(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """Add a ledger entry chained to the previous one (sets version, weights hash, prev_hash, hash).

        NaN and Infinity values (a loss with no step, an undefined metric) are recorded as null.
        """
        import medzoo

        e = _finite(dict(entry))
        e.setdefault("medzoo_version", medzoo.__version__)
        e["weights_sha256"] = self.weights_sha256
        e["prev_hash"] = self.ledger[-1]["hash"] if self.ledger else GENESIS
        e["hash"] = entry_hash(e)
        self.ledger.append(e)
        return e

    def with_state(self, model_state: Mapping[str, Tensor], strategy_state: Mapping[str, Tensor]) -> Baton:
        """A copy with new tensors and the same ledger (the caller then appends its entry)."""
        b = copy.copy(self)
        b.ledger = [dict(e) for e in self.ledger]
        b.model_state = _cpu32(model_state)
        b.strategy_state = _cpu32(strategy_state)
        b.signed = b.signature_checked = False
        b.path = None
        return b

    # -- I/O -----------------------------------------------------------------------------------------------
    def write(self, path: str | Path, *, key_file: str | Path | None = None) -> Path:
        """Write atomically (optionally HMAC-signed). Returns ``path``."""
        from safetensors.torch import save as st_save

        from medzoo.io import atomic_write_bytes

        key = read_key(key_file)
        digest = self.content_sha256()
        integrity = {"sha256": digest, "hmac_sha256": hmac.new(key, digest.encode(), "sha256").hexdigest() if key else None}
        try:
            meta_json = json.dumps(self.meta(), sort_keys=True, default=str, allow_nan=False)
        except ValueError as e:  # an entry written by an older medzoo; new entries never hold NaN (see append)
            raise BatonError(f"{path}: the baton's metadata holds NaN or Infinity, which is not JSON ({e}); "
                             "nothing was written") from e
        header = {"format": self.format, "baton": meta_json, "integrity": json.dumps(integrity, sort_keys=True)}
        return atomic_write_bytes(Path(path), st_save(self.all_tensors(), metadata=header))

    @classmethod
    def read(cls, path: str | Path, *, key_file: str | Path | None = None, expect_task: str | None = None) -> Baton:
        """Read and verify a baton.

        Raises:
            BatonError: missing, truncated, edited, foreign (not a baton), for another task, from a newer format,
                unsigned while a key is given, or signed with a different key.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load as st_load

        p = Path(path)
        if not p.is_file():
            raise BatonError(f"{p}: no such baton file")
        raw = p.read_bytes()
        try:
            if len(raw) < 8:
                raise ValueError("file shorter than a safetensors header")
            header_len = int.from_bytes(raw[:8], "little")
            if header_len > len(raw) - 8:
                raise ValueError("header runs past the end of the file")
            header = json.loads(raw[8:8 + header_len]).get("__metadata__") or {}
            tensors = st_load(raw)
        except (SafetensorError, ValueError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BatonError(f"{p}: truncated or not a safetensors file ({e}); nothing was written") from e
        fmt = str(header.get("format", ""))
        if not fmt.startswith("medzoo.baton/"):
            hint = " (it is a medzoo model file, not a baton)" if fmt.startswith("medzoo.model/") else ""
            raise BatonError(f"{p}: not a medzoo relay baton{hint}")
        try:
            version = int(fmt.split("/", 1)[1])
        except ValueError as e:
            raise BatonError(f"{p}: unreadable baton format {fmt!r}") from e
        if version > FORMAT_VERSION:
            raise BatonError(f"{p}: baton format {fmt!r} was written by a newer medzoo; this medzoo reads up to "
                             f"{FORMAT!r}; upgrade medzoo at this site")
        try:
            meta = json.loads(header["baton"])
            integrity = json.loads(header["integrity"])
        except (KeyError, json.JSONDecodeError) as e:
            raise BatonError(f"{p}: baton metadata is missing or corrupt ({e})") from e
        bad = [k for k in tensors if not k.startswith((MODEL_PREFIX, STRATEGY_PREFIX))]
        if bad:
            raise BatonError(f"{p}: baton holds unexpected tensors {bad[:3]} (only model/ and strategy/ are allowed)")
        try:
            b = cls(task=meta["task"], architecture=meta["architecture"], strategy=meta["strategy"]["name"],
                    strategy_settings=meta["strategy"]["settings"], ledger=meta["ledger"], format=meta["format"],
                    model_state={k[len(MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(MODEL_PREFIX)},
                    strategy_state={k[len(STRATEGY_PREFIX):]: v for k, v in tensors.items() if k.startswith(STRATEGY_PREFIX)},
                    path=p)
        except (KeyError, TypeError) as e:
            raise BatonError(f"{p}: baton metadata lacks {e}") from e
        if b.format != fmt:
            raise BatonError(f"{p}: baton was edited (header format {fmt!r} differs from metadata {b.format!r})")
        digest = b.content_sha256()
        if digest != integrity.get("sha256"):
            raise BatonError(f"{p}: content hash mismatch (file content {digest[:12]}…, recorded "
                             f"{str(integrity.get('sha256'))[:12]}…): the baton was edited or corrupted in transit")
        b.check_ledger()
        if expect_task is not None and b.task != expect_task:
            raise BatonError(f"{p}: this baton is for task {b.task!r}, not {expect_task!r}")
        b.signed = bool(integrity.get("hmac_sha256"))
        keys = _read_key_candidates(key_file)
        if keys is not None:
            if not b.signed:
                raise BatonError(f"{p}: baton is not signed, but a key was given; refusing an unsigned baton")
            # the second candidate: a hex key split over lines, as read before inner whitespace was removed
            if not any(hmac.compare_digest(hmac.new(k, digest.encode(), "sha256").hexdigest(),
                                           str(integrity["hmac_sha256"])) for k in keys):
                raise BatonError(f"{p}: HMAC signature does not match this key (wrong key, or the baton was re-signed "
                                 "by someone without the consortium key)")
            b.signature_checked = True
        return b

    def check_ledger(self) -> None:
        """Verify each entry's hash, the chain, and that the last entry's weights hash matches the weights.

        Raises:
            BatonError: where the chain breaks.
        """
        where = self.path or "baton"
        if not self.ledger or self.ledger[0].get("kind") != "start":
            raise BatonError(f"{where}: ledger does not begin with a start entry")
        prev = GENESIS
        for i, e in enumerate(self.ledger):
            if e.get("prev_hash") != prev:
                raise BatonError(f"{where}: ledger chain broken at entry {i} (prev_hash does not match entry {i - 1})")
            if entry_hash(e) != e.get("hash"):
                raise BatonError(f"{where}: ledger entry {i} was edited (its hash does not match its content)")
            prev = e["hash"]
        if self.ledger[-1].get("weights_sha256") != self.weights_sha256:
            raise BatonError(f"{where}: weights do not match the last ledger entry's weights hash")


def _cpu32(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: (v.detach().to("cpu").float() if v.is_floating_point() else v.detach().to("cpu")).contiguous()
            for k, v in state.items()}

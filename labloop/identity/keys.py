"""CURVE key pairs: the daemon's (or an agent's) own pair kept in ``--keys DIR``, and a person's key file.

Why files and not the store: a secret key must never travel through the database that many people read; the store
holds public keys only. Both kinds of file are refused when group- or world-readable, as ssh refuses a private key:
a key others can read identifies nobody.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from zmq.utils import z85

from labloop.errors import LabloopError

SERVER_KEY_FILE = "server.key"
KEY_ENV = "LABLOOP_KEY"

#: Where ``labloop users add`` and the daemon keep the daemon's key pair unless told (--keys DIR).
DEFAULT_KEYS_DIR = Path("labloop-keys")
#: The daemon's default addresses (``labloop serve``), written into key files unless ``users add`` is told others.
DEFAULT_CONTROL = "tcp://127.0.0.1:7510"
DEFAULT_STREAM = "tcp://127.0.0.1:7511"


def valid_z85_key(value: str) -> str:
    """A CURVE key in Z85 (40 characters, decoding to 32 bytes); raises ValueError otherwise."""
    if not isinstance(value, str) or len(value) != 40:
        raise ValueError("a CURVE key is 40 Z85 characters")
    try:
        raw = z85.decode(value.encode("ascii"))
    except Exception:  # noqa: BLE001 - z85.decode raises ValueError/KeyError/UnicodeError on garbage
        raise ValueError("not a Z85-encoded CURVE key") from None
    if len(raw) != 32:
        raise ValueError("a CURVE key decodes to 32 bytes")
    return value


def check_private(path: Path, what: str) -> None:
    """Refuse a secret-key file that the group or others may read (or write)."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise LabloopError(
            f"{what} {path} may be read by other users (mode {stat.S_IMODE(mode):04o})",
            f"run `chmod 600 {path}`; if others may have copied it, revoke it and make a new one",
        )


def write_private(path: Path, text: str, force: bool = False) -> None:
    """Write ``text`` to a new file created with mode 0600 (never briefly readable by others)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise LabloopError(
            f"{path} already exists", "choose another --out file, or pass --force to replace it"
        ) from None
    except OSError as exc:
        raise LabloopError(f"cannot write {path}: {exc.strerror}", "choose a file in a folder you may write") from None
    try:
        os.fchmod(fd, 0o600)  # an existing file replaced with --force keeps its old mode otherwise
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise LabloopError(f"cannot write {path}: {exc.strerror}", "check the disk and the folder") from None


@dataclass(frozen=True)
class ServerKeys:
    """The daemon's (or an agent's) own CURVE key pair, Z85-encoded bytes."""

    public: bytes
    secret: bytes

    @classmethod
    def generate(cls) -> ServerKeys:
        public, secret = zmq.curve_keypair()
        return cls(public=public, secret=secret)

    @classmethod
    def load_or_create(cls, dir: Path) -> ServerKeys:
        """The pair kept in ``dir/server.key`` (JSON, mode 0600), made on first use; the folder is created 0700."""
        dir = Path(dir).expanduser()
        path = dir / SERVER_KEY_FILE
        if not path.exists():
            try:
                dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise LabloopError(
                    f"cannot create the key folder {dir}: {exc.strerror}", "pass --keys with a folder you may write"
                ) from None
            keys = cls.generate()
            # written whole under a temporary name, then linked into place: a daemon and `users add` starting
            # at once never read a half-written file, and the first one's pair wins
            tmp = dir / f".{SERVER_KEY_FILE}.{os.getpid()}.{os.urandom(4).hex()}"
            write_private(tmp, json.dumps({"public": keys.public.decode(), "secret": keys.secret.decode()}))
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process made it meanwhile: use theirs
            except OSError as exc:
                raise LabloopError(
                    f"cannot write {path}: {exc.strerror}", "pass --keys with a folder you may write"
                ) from None
            else:
                return keys
            finally:
                tmp.unlink(missing_ok=True)
        return cls._load(path)

    @classmethod
    def _load(cls, path: Path) -> ServerKeys:
        check_private(path, "the key file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            public, secret = valid_z85_key(data["public"]), valid_z85_key(data["secret"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LabloopError(
                f"the key file {path} is unreadable or malformed ({exc})",
                "restore it from a backup; or move it away to make a new pair (every client "
                "key file must then be made again with `labloop users add`)",
            ) from None
        if zmq.curve_public(secret.encode()) != public.encode():
            raise LabloopError(
                f"the key file {path} holds a public key that does not belong to its secret key",
                "restore it from a backup, or move it away to make a new pair",
            )
        return cls(public=public.encode(), secret=secret.encode())

    def public_z85(self) -> str:
        return self.public.decode("ascii")


class ClientKey(BaseModel):
    """Everything a person's (or an agent's) client needs: who they are, their pair, the daemon's public key and
    where the daemon listens. Written by ``labloop users add``; secret: mode 0600."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    role: str
    public_key: str
    secret_key: str
    server_public_key: str
    control: str | None = None
    stream: str | None = None

    @field_validator("public_key", "secret_key", "server_public_key")
    @classmethod
    def _z85(cls, v: str) -> str:
        return valid_z85_key(v)


def load_client_key(path: str | os.PathLike[str] | None = None) -> ClientKey:
    """The key file at ``path`` (or ``$LABLOOP_KEY``), checked: present, private (0600), well-formed, and its
    public key belonging to its secret key."""
    given = path if path is not None else os.environ.get(KEY_ENV)
    if not given:
        raise LabloopError("no key file given", f"pass --key FILE (made by `labloop users add`) or set {KEY_ENV}")
    p = Path(given).expanduser()
    if not p.is_file():
        raise LabloopError(f"no key file at {p}", "check the path; an admin makes one with `labloop users add`")
    check_private(p, "the key file")
    try:
        data: Any = json.loads(p.read_text(encoding="utf-8"))
        key = ClientKey.model_validate(data)
    except (OSError, UnicodeError, ValueError) as exc:  # ValidationError is a ValueError
        why = _short(exc) if isinstance(exc, ValidationError) else str(exc)
        raise LabloopError(
            f"the key file {p} is unreadable or malformed ({why})",
            "ask an admin for a new one (`labloop users add NAME --role ROLE --out FILE`)",
        ) from None
    if zmq.curve_public(key.secret_key.encode()) != key.public_key.encode():
        raise LabloopError(
            f"the key file {p}: its public key does not belong to its secret key", "ask an admin for a new one"
        )
    return key


def _short(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors()[:3])


def apply_client(socket: zmq.Socket, key: ClientKey, server_public: bytes | None = None) -> None:
    """Make ``socket`` a CURVE client with the person's pair, trusting ``server_public`` (default: the daemon's
    key from the key file). Call before connect."""
    socket.curve_publickey = key.public_key.encode()
    socket.curve_secretkey = key.secret_key.encode()
    socket.curve_serverkey = server_public if server_public is not None else key.server_public_key.encode()


def apply_server(socket: zmq.Socket, keys: ServerKeys, domain: str = "labloop") -> None:
    """Make ``socket`` a CURVE server whose clients are checked by the ZAP handler of ``domain``. Call before bind."""
    socket.curve_server = True
    socket.curve_publickey = keys.public
    socket.curve_secretkey = keys.secret
    socket.zap_domain = domain.encode()

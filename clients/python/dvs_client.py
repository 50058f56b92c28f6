"""A small synchronous DVS client in Python (standard library only).

Speaks the process protocol of docs/protocol.md to a node daemon over its Unix socket: framing
(section 2), hello with the token (section 4), bind, receive, receive_request, reply, sendrec, send,
notify, unbind (section 5), and the migration requests (section 16): a ``snapshot`` request served
by the endpoint's hook, ``restored``/``migrated`` from bind, the ``moved`` event. Grants are not
supported: a grant request from the daemon is answered with EDVSBADVALUE.

One call at a time: every call writes its request and reads frames until its response arrives,
serving the daemon's own requests (snapshot) and events (moved, restored, bye) as they come.

    client = Client()                      # DVS_SOCKET, DVS_TOKEN_FILE, DVS_DC, DVS_RUN
    p = client.bind(slot=client.env_slot)  # DVS_SLOT
    if p.restored is not None: ...         # the state of the service before it moved here
    p.on_snapshot(lambda: my_state_bytes)
    msg = p.receive_request()
    p.reply(msg.source, 0, payload)
"""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional

PROTOCOL_VERSION = 1
WIRE_VERSION = 1
ANY = 31438
FRAME_OVERHEAD_BYTES = 4096
MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024
# Frames from the daemon are read up to this size (its maxFrameBytes plus the framing's slack).
_READ_LIMIT = 256 * 1024 * 1024
# How long past a call's own timeout the client waits for the daemon's answer before failing it locally.
LOCAL_GRACE_S = 2.0

# The codes this client raises itself; errors from the daemon carry their own code and errno.
ERRNO = {
    "EDVSINTR": -4,
    "EDVSIO": -5,
    "EDVSACCES": -13,
    "EDVSPACKSIZE": -50,
    "EDVSCONNREFUSED": -59,
    "EDVSCONNRESET": -60,
    "EDVSTIMEDOUT": -61,
    "EDVSNOTCONN": -64,
    "EDVSSHUTDOWN": -65,
    "EDVSPROTONOSUPPORT": -68,
    "EDVSMSGSIZE": -73,
    "EDVSBADREQUEST": -107,
    "EDVSBADDCID": -302,
    "EDVSNOTBIND": -310,
    "EDVSMIGRATE": -332,
    "EDVSBADVALUE": -339,
}


class DvsError(Exception):
    """A DVS error: a stable ``code`` (e.g. "EDVSMIGRATE"), its ``errno`` and optional ``details``."""

    def __init__(self, code: str, message: Optional[str] = None, errno: Optional[int] = None, details: Optional[Dict[str, Any]] = None):
        self.code = code
        self.errno = errno if errno is not None else ERRNO.get(code, ERRNO["EDVSIO"])
        text = message if message is not None else code
        self.message = text if text.startswith(code + ": ") else f"{code}: {text}"
        self.details = details or {}
        super().__init__(self.message)

    def to_wire(self) -> Dict[str, Any]:
        e: Dict[str, Any] = {"code": self.code, "errno": self.errno, "message": self.message}
        details = {k: v for k, v in self.details.items() if isinstance(v, (str, int, float, bool))}
        if details:
            e["details"] = details
        return e

    @staticmethod
    def from_wire(e: Any) -> "DvsError":
        if not isinstance(e, dict):
            return DvsError("EDVSIO", "malformed error object")
        code = e.get("code") if isinstance(e.get("code"), str) else "EDVSIO"
        errno = e.get("errno") if isinstance(e.get("errno"), int) else None
        message = e.get("message") if isinstance(e.get("message"), str) else None
        details = e.get("details") if isinstance(e.get("details"), dict) else None
        return DvsError(code, message, errno, details)


# ---------------------------------------------------------------- MessagePack


class _Undefined:
    """msgpackr's *undefined* (fixext 1, type 0): decoded as None, like nil and an absent field."""


def packb(value: Any) -> bytes:
    """Encodes nil, bool, int, float (as float64), str, bytes-like (bin), list/tuple (array) and dict with str keys (map)."""
    out: List[bytes] = []
    _pack(value, out, 0)
    return b"".join(out)


def _pack(v: Any, out: List[bytes], depth: int) -> None:
    if depth > 64:
        raise DvsError("EDVSBADVALUE", "value nested too deep to encode")
    if v is None:
        out.append(b"\xc0")
    elif v is True:
        out.append(b"\xc3")
    elif v is False:
        out.append(b"\xc2")
    elif isinstance(v, int):
        _pack_int(v, out)
    elif isinstance(v, float):
        out.append(b"\xcb" + struct.pack(">d", v))
    elif isinstance(v, str):
        b = v.encode("utf-8")
        n = len(b)
        if n < 32:
            out.append(bytes([0xA0 | n]))
        elif n < 0x100:
            out.append(b"\xd9" + bytes([n]))
        elif n < 0x10000:
            out.append(b"\xda" + struct.pack(">H", n))
        else:
            out.append(b"\xdb" + struct.pack(">I", n))
        out.append(b)
    elif isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        n = len(b)
        if n < 0x100:
            out.append(b"\xc4" + bytes([n]))
        elif n < 0x10000:
            out.append(b"\xc5" + struct.pack(">H", n))
        else:
            out.append(b"\xc6" + struct.pack(">I", n))
        out.append(b)
    elif isinstance(v, (list, tuple)):
        n = len(v)
        if n < 16:
            out.append(bytes([0x90 | n]))
        elif n < 0x10000:
            out.append(b"\xdc" + struct.pack(">H", n))
        else:
            out.append(b"\xdd" + struct.pack(">I", n))
        for item in v:
            _pack(item, out, depth + 1)
    elif isinstance(v, dict):
        n = len(v)
        if n < 16:
            out.append(bytes([0x80 | n]))
        elif n < 0x10000:
            out.append(b"\xde" + struct.pack(">H", n))
        else:
            out.append(b"\xdf" + struct.pack(">I", n))
        for k, item in v.items():
            if not isinstance(k, str):
                raise DvsError("EDVSBADVALUE", f"map keys must be strings, got {type(k).__name__}")
            _pack(k, out, depth + 1)
            _pack(item, out, depth + 1)
    else:
        raise DvsError("EDVSBADVALUE", f"cannot encode a {type(v).__name__} as MessagePack")


def _pack_int(v: int, out: List[bytes]) -> None:
    if 0 <= v < 0x80:
        out.append(bytes([v]))
    elif -32 <= v < 0:
        out.append(struct.pack(">b", v))
    elif 0 <= v < 0x100:
        out.append(b"\xcc" + bytes([v]))
    elif 0 <= v < 0x10000:
        out.append(b"\xcd" + struct.pack(">H", v))
    elif 0 <= v < 0x100000000:
        out.append(b"\xce" + struct.pack(">I", v))
    elif 0 <= v < 0x10000000000000000:
        out.append(b"\xcf" + struct.pack(">Q", v))
    elif -0x80 <= v < 0:
        out.append(b"\xd0" + struct.pack(">b", v))
    elif -0x8000 <= v < 0:
        out.append(b"\xd1" + struct.pack(">h", v))
    elif -0x80000000 <= v < 0:
        out.append(b"\xd2" + struct.pack(">i", v))
    elif -0x8000000000000000 <= v < 0:
        out.append(b"\xd3" + struct.pack(">q", v))
    else:
        raise DvsError("EDVSBADVALUE", f"integer {v} does not fit in 64 bits")


def unpackb(data: bytes) -> Any:
    """Decodes exactly one MessagePack value filling ``data``; EDVSBADREQUEST for anything malformed."""
    r = _Reader(memoryview(data))
    v = r.value(0)
    if r.at != len(data):
        raise DvsError("EDVSBADREQUEST", "trailing bytes after the MessagePack value")
    return None if isinstance(v, _Undefined) else v


class _Reader:
    def __init__(self, buf: memoryview):
        self.buf = buf
        self.at = 0

    def take(self, n: int) -> memoryview:
        if self.at + n > len(self.buf):
            raise DvsError("EDVSBADREQUEST", "truncated MessagePack value")
        b = self.buf[self.at : self.at + n]
        self.at += n
        return b

    def u(self, fmt: str, n: int) -> Any:
        return struct.unpack(fmt, self.take(n))[0]

    def value(self, depth: int) -> Any:
        if depth > 64:
            raise DvsError("EDVSBADREQUEST", "MessagePack value nested too deep")
        t = self.take(1)[0]
        if t < 0x80:
            return t
        if t >= 0xE0:
            return t - 0x100
        if 0x80 <= t <= 0x8F:
            return self.map(t & 0x0F, depth)
        if 0x90 <= t <= 0x9F:
            return self.array(t & 0x0F, depth)
        if 0xA0 <= t <= 0xBF:
            return self.str(t & 0x1F)
        if t == 0xC0:
            return None
        if t == 0xC2:
            return False
        if t == 0xC3:
            return True
        if t in (0xC4, 0xC5, 0xC6):
            n = self.u({0xC4: ">B", 0xC5: ">H", 0xC6: ">I"}[t], {0xC4: 1, 0xC5: 2, 0xC6: 4}[t])
            return bytes(self.take(n))
        if t in (0xC7, 0xC8, 0xC9):
            n = self.u({0xC7: ">B", 0xC8: ">H", 0xC9: ">I"}[t], {0xC7: 1, 0xC8: 2, 0xC9: 4}[t])
            return self.ext(n)
        if t == 0xCA:
            return self.u(">f", 4)
        if t == 0xCB:
            return self.u(">d", 8)
        if t == 0xCC:
            return self.u(">B", 1)
        if t == 0xCD:
            return self.u(">H", 2)
        if t == 0xCE:
            return self.u(">I", 4)
        if t == 0xCF:
            return self.u(">Q", 8)
        if t == 0xD0:
            return self.u(">b", 1)
        if t == 0xD1:
            return self.u(">h", 2)
        if t == 0xD2:
            return self.u(">i", 4)
        if t == 0xD3:
            return self.u(">q", 8)
        if t in (0xD4, 0xD5, 0xD6, 0xD7, 0xD8):
            return self.ext({0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}[t])
        if t == 0xD9:
            return self.str(self.u(">B", 1))
        if t == 0xDA:
            return self.str(self.u(">H", 2))
        if t == 0xDB:
            return self.str(self.u(">I", 4))
        if t == 0xDC:
            return self.array(self.u(">H", 2), depth)
        if t == 0xDD:
            return self.array(self.u(">I", 4), depth)
        if t == 0xDE:
            return self.map(self.u(">H", 2), depth)
        if t == 0xDF:
            return self.map(self.u(">I", 4), depth)
        raise DvsError("EDVSBADREQUEST", f"invalid MessagePack byte 0x{t:02x}")

    def str(self, n: int) -> str:
        try:
            return str(self.take(n), "utf-8")
        except UnicodeDecodeError:
            raise DvsError("EDVSBADREQUEST", "a MessagePack str is not UTF-8") from None

    def array(self, n: int, depth: int) -> List[Any]:
        out = []
        for _ in range(n):
            v = self.value(depth + 1)
            out.append(None if isinstance(v, _Undefined) else v)
        return out

    def map(self, n: int, depth: int) -> Dict[Any, Any]:
        out: Dict[Any, Any] = {}
        for _ in range(n):
            k = self.value(depth + 1)
            if isinstance(k, (list, dict)):
                raise DvsError("EDVSBADREQUEST", "a MessagePack map key must be a scalar")
            v = self.value(depth + 1)
            out[k] = None if isinstance(v, _Undefined) else v
        return out

    def ext(self, n: int) -> Any:
        kind = struct.unpack(">b", self.take(1))[0]
        data = bytes(self.take(n))
        if kind == 0 and data == b"\x00":
            return _Undefined()
        raise DvsError("EDVSBADREQUEST", f"MessagePack extension type {kind} is not supported by this client")


# ---------------------------------------------------------------- framing (docs/protocol.md section 2)


def encode_frame(value: Any, max_frame_bytes: int) -> bytes:
    body = packb(value)
    if len(body) > max_frame_bytes:
        raise DvsError("EDVSMSGSIZE", f"frame body of {len(body)} bytes exceeds {max_frame_bytes}")
    return struct.pack(">IBB", len(body) + 2, WIRE_VERSION, 0) + body


class Message(NamedTuple):
    source: int
    type: int
    payload: Any


def _message(r: Any) -> Message:
    if not isinstance(r, dict) or not isinstance(r.get("source"), int) or not isinstance(r.get("type"), int):
        raise DvsError("EDVSBADREQUEST", "malformed message from the daemon")
    return Message(r["source"], r["type"], r.get("payload"))


def _int(v: Any) -> Optional[int]:
    """An int on the wire: a MessagePack int, or a float64 holding one (the reference writes large ints so)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


SnapshotHook = Callable[[], Optional[bytes]]


class Process:
    """An endpoint bound through the daemon. ``restored`` is its state from before a move (or None), ``migrated`` whether it moved here."""

    def __init__(self, client: "Client", r: Dict[str, Any], restored: Optional[bytes], on_moved: Optional[Callable[["Process"], None]]):
        self.client = client
        self.dcid: int = _int(r.get("dcid")) or 0
        self.endpoint: int = _int(r.get("endpoint")) or 0
        self.slot: int = _int(r.get("slot")) or 0
        self.generation: int = _int(r.get("generation")) or 0
        self.name: str = r.get("name") if isinstance(r.get("name"), str) else ""
        self.system: bool = r.get("system") is True
        self.restored: Optional[bytes] = restored
        self.migrated: bool = r.get("migrated") is True
        # Where the endpoint went: {"node", "epoch"} once the daemon said it moved.
        self.moved: Optional[Dict[str, int]] = None
        self.bound = True
        self._snapshot_hook: Optional[SnapshotHook] = None
        self._on_moved = on_moved

    def on_snapshot(self, hook: Optional[SnapshotHook]) -> None:
        """How the service gives its state before a move: bytes, or None (stateless). Raise DvsError("EDVSMIGRATE") to refuse."""
        self._snapshot_hook = hook

    def _call(self, op: str, fields: Dict[str, Any], timeout_ms: Optional[int] = None) -> Any:
        if not self.bound:
            raise DvsError("EDVSNOTBIND", "the calling process is no longer bound")
        return self.client.call(op, dict(fields, dcid=self.dcid, endpoint=self.endpoint), timeout_ms, self)

    def send(self, dst: int, type: int, payload: Any = None, timeout_ms: Optional[int] = None) -> None:
        self._call("send", _msg_fields(dst, type, payload), timeout_ms)

    def sendrec(self, dst: int, type: int, payload: Any = None, timeout_ms: Optional[int] = None) -> Message:
        return _message(self._call("sendrec", _msg_fields(dst, type, payload), timeout_ms))

    def receive(self, src: int = ANY, timeout_ms: Optional[int] = None) -> Message:
        return _message(self._call("receive", {"src": src}, timeout_ms))

    def receive_request(self, timeout_ms: Optional[int] = None) -> Message:
        return _message(self._call("receiveRequest", {}, timeout_ms))

    def reply(self, dst: int, type: int, payload: Any = None) -> None:
        self._call("reply", _msg_fields(dst, type, payload))

    def notify(self, dst: int, arg: Optional[int] = None) -> str:
        fields: Dict[str, Any] = {"dst": dst}
        if arg is not None:
            fields["arg"] = arg
        return self._call("notify", fields)

    def unbind(self) -> None:
        if not self.bound:
            return
        try:
            self._call("unbind", {})
        finally:
            self.bound = False
            self.client._forget(self)

    def _snapshot(self) -> Optional[bytes]:
        hook = self._snapshot_hook
        return None if hook is None else hook()

    def _mark_moved(self, node: int, epoch: int) -> None:
        self.bound = False
        self.moved = {"node": node, "epoch": epoch}
        if self._on_moved is not None:
            self._on_moved(self)


def _msg_fields(dst: int, type: int, payload: Any) -> Dict[str, Any]:
    f: Dict[str, Any] = {"dst": dst, "type": type}
    if payload is not None:
        f["payload"] = payload
    return f


class Client:
    """A connection to a node daemon. Arguments not given come from DVS_SOCKET, DVS_TOKEN_FILE, DVS_DC and DVS_RUN."""

    def __init__(
        self,
        socket_path: Optional[str] = None,
        token: Optional[str] = None,
        token_file: Optional[str] = None,
        dcid: Optional[int] = None,
        run: Optional[int] = None,
        name: Optional[str] = None,
        connect_timeout: float = 10.0,
    ):
        env = os.environ
        self.socket_path = socket_path or env.get("DVS_SOCKET")
        if not self.socket_path:
            raise DvsError("EDVSBADVALUE", "no socket path given and DVS_SOCKET is not set")
        if token is None:
            path = token_file or env.get("DVS_TOKEN_FILE")
            if not path:
                raise DvsError("EDVSBADVALUE", "no token given and DVS_TOKEN_FILE is not set")
            with open(path, "r", encoding="utf-8") as f:
                token = f.read().strip()
        self.dcid: Optional[int] = dcid if dcid is not None else _env_int("DVS_DC")
        self.run: Optional[int] = run if run is not None else _env_int("DVS_RUN")
        # What the program was started to bind (dvs run): DVS_SLOT, or None.
        self.env_slot: Optional[int] = _env_int("DVS_SLOT")
        self._processes: Dict[tuple, Process] = {}
        self._next_id = 1
        self._rbuf = bytearray()
        self._bye: Optional[DvsError] = None
        self._closed: Optional[DvsError] = None
        # Ids of calls given up locally: their late answers are dropped.
        self._abandoned: set = set()
        self._restored_pieces: Dict[int, List[bytes]] = {}
        # The id of the call reading frames now: `restored` pieces are kept for it only.
        self._waiting: Optional[int] = None
        self.max_frame_bytes = DEFAULT_MAX_FRAME_BYTES
        self._settle_s = 0.0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(connect_timeout)
        try:
            self._sock.connect(self.socket_path)
        except OSError as e:
            self._sock.close()
            raise DvsError("EDVSCONNREFUSED", f"cannot connect to {self.socket_path}: {e}") from None
        hello: Dict[str, Any] = {"version": PROTOCOL_VERSION, "token": token, "pid": os.getpid(), "lz4": False}
        if name is not None:
            hello["name"] = name
        if self.run is not None:
            hello["run"] = self.run
        try:
            self.info: Dict[str, Any] = self.call("hello", hello, deadline_s=connect_timeout)
        except DvsError:
            self.close()
            raise
        if not isinstance(self.info, dict) or _int(self.info.get("maxFrameBytes")) is None:
            self.close()
            raise DvsError("EDVSPROTONOSUPPORT", "the daemon answered hello with an unexpected result")
        self.max_frame_bytes = _int(self.info["maxFrameBytes"]) or DEFAULT_MAX_FRAME_BYTES
        self._settle_s = max(0, _int(self.info.get("settleMs")) or 0) / 1000.0
        self._sock.settimeout(None)

    # ------------------------------------------------------------ public

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def bind(self, dcid: Optional[int] = None, slot: Optional[int] = None, endpoint: Optional[int] = None, name: Optional[str] = None,
             timeout_ms: Optional[int] = None, on_moved: Optional[Callable[[Process], None]] = None) -> Process:
        """Binds an endpoint (``slot``, an exact ``endpoint``, or the lowest free user slot); the result carries ``restored``."""
        fields: Dict[str, Any] = {}
        dc = dcid if dcid is not None else self.dcid
        if dc is not None:
            fields["dcid"] = dc
        if slot is not None:
            fields["slot"] = slot
        if endpoint is not None:
            fields["endpoint"] = endpoint
        if name is not None:
            fields["name"] = name
        bind_id = self._next_id
        try:
            r = self.call("bind", fields, timeout_ms)
        finally:
            pieces = self._restored_pieces.pop(bind_id, [])
        if not isinstance(r, dict):
            raise DvsError("EDVSBADREQUEST", "malformed bind result")
        last = r.get("restored")
        if last is not None and not isinstance(last, bytes):
            raise DvsError("EDVSBADREQUEST", "malformed restored state in the bind result")
        restored = None if last is None else b"".join(pieces + [last])
        p = Process(self, r, restored, on_moved)
        self._processes[(p.dcid, p.endpoint)] = p
        return p

    def ping(self) -> None:
        self.call("ping", {})

    def wait_moved(self, p: Process, timeout_s: float) -> bool:
        """Reads frames (serving the daemon's requests) until ``p`` moved or ``timeout_s`` passed; True once it moved."""
        deadline = time.monotonic() + timeout_s
        while p.moved is None:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read_one(deadline):
                break
        return p.moved is not None

    def close(self) -> None:
        if self._closed is None:
            self._closed = DvsError("EDVSNOTCONN", "connection closed")
        try:
            self._sock.close()
        except OSError:
            pass
        for p in self._processes.values():
            p.bound = False
        self._processes.clear()

    # ------------------------------------------------------------ calls

    def call(self, op: str, fields: Dict[str, Any], timeout_ms: Optional[int] = None, caller: Optional[Process] = None,
             deadline_s: Optional[float] = None) -> Any:
        """Sends one request and reads frames until its response; raises its error as a DvsError."""
        if self._closed is not None:
            raise self._not_connected()
        rid = self._next_id
        self._next_id += 1
        frame = dict(fields, id=rid, op=op)
        if timeout_ms is not None:
            frame["timeoutMs"] = timeout_ms
        self._write(frame)
        # Guarded locally too: the daemon answers a timed-out call itself, normally well before this.
        deadline = None
        if deadline_s is not None:
            deadline = time.monotonic() + deadline_s
        elif timeout_ms is not None and timeout_ms >= 0:
            deadline = time.monotonic() + timeout_ms / 1000.0 + self._settle_s + LOCAL_GRACE_S
        self._waiting = rid
        try:
            while True:
                f = self._read_frame(deadline)
                if f is None:
                    self._abandoned.add(rid)
                    self._cancel(rid)
                    raise DvsError("EDVSTIMEDOUT", "the daemon did not answer in time")
                if self._dispatch(f) and _int(f.get("id")) == rid:
                    if f.get("ok") is True:
                        return f.get("result")
                    raise DvsError.from_wire(f.get("error"))
                if caller is not None and caller.moved is not None:
                    # The endpoint moved while this call waited: its answer will not come from here.
                    self._abandoned.add(rid)
                    raise DvsError("EDVSSHUTDOWN", f"endpoint moved to node {caller.moved['node']}", details={"endpoint": caller.endpoint, "node": caller.moved["node"]})
        finally:
            self._waiting = None

    def _cancel(self, target: int) -> None:
        if self._closed is not None:
            return
        rid = self._next_id
        self._next_id += 1
        self._abandoned.add(rid)
        try:
            self._write({"id": rid, "op": "cancel", "target": target})
        except DvsError:
            pass

    def _forget(self, p: Process) -> None:
        if self._processes.get((p.dcid, p.endpoint)) is p:
            del self._processes[(p.dcid, p.endpoint)]

    def _not_connected(self) -> DvsError:
        why = self._closed if self._bye is None else self._bye
        return DvsError("EDVSNOTCONN", f"connection to the daemon lost ({why.message if why else 'closed'})")

    # ------------------------------------------------------------ frames

    def _write(self, frame: Dict[str, Any]) -> None:
        data = encode_frame(frame, self.max_frame_bytes)
        try:
            self._sock.sendall(data)
        except OSError as e:
            self._lost(DvsError("EDVSCONNRESET", str(e)))
            raise self._not_connected() from None

    def _read_one(self, deadline: Optional[float]) -> bool:
        """Reads and dispatches one frame; False when none came before ``deadline``."""
        f = self._read_frame(deadline)
        if f is None:
            return False
        self._dispatch(f)
        return True

    def _read_frame(self, deadline: Optional[float]) -> Optional[Dict[str, Any]]:
        """The next frame as a map; None at ``deadline``; raises EDVSNOTCONN when the connection is gone."""
        while True:
            if len(self._rbuf) >= 4:
                length = struct.unpack(">I", self._rbuf[:4])[0]
                if length < 2 or length > _READ_LIMIT:
                    self._lost(DvsError("EDVSPACKSIZE", f"frame length {length} from the daemon"))
                    raise self._not_connected()
                if len(self._rbuf) >= 4 + length:
                    version, flags = self._rbuf[4], self._rbuf[5]
                    body = bytes(self._rbuf[6 : 4 + length])
                    del self._rbuf[: 4 + length]
                    if version != WIRE_VERSION or flags != 0:
                        # We announce no LZ4, so a compressed frame is a protocol error too.
                        self._lost(DvsError("EDVSBADREQUEST", f"frame version {version} flags {flags} from the daemon"))
                        raise self._not_connected()
                    try:
                        f = unpackb(body)
                    except DvsError as e:
                        self._lost(e)
                        raise self._not_connected() from None
                    if not isinstance(f, dict):
                        self._lost(DvsError("EDVSBADREQUEST", "a frame from the daemon is not a map"))
                        raise self._not_connected()
                    return f
            if self._closed is not None:
                raise self._not_connected()
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._sock.settimeout(left)
            else:
                self._sock.settimeout(None)
            try:
                chunk = self._sock.recv(1 << 20)
            except socket.timeout:
                return None
            except OSError as e:
                self._lost(DvsError("EDVSCONNRESET", str(e)))
                raise self._not_connected() from None
            if not chunk:
                self._lost(DvsError("EDVSCONNRESET", "connection closed"))
                raise self._not_connected()
            self._rbuf += chunk

    def _lost(self, why: DvsError) -> None:
        if self._bye is None:
            self._bye = why
        self.close()

    def _dispatch(self, f: Dict[str, Any]) -> bool:
        """Serves a frame that is not a response; True when it is a response (for the caller to match)."""
        op = f.get("op")
        if f.get("sid") is not None and isinstance(op, str):
            self._serve(f)
            return False
        if op == "bye":
            self._bye = DvsError.from_wire(f.get("error"))
            return False
        if op == "moved":
            dcid, ep, node, epoch = (_int(f.get(k)) for k in ("dcid", "endpoint", "node", "epoch"))
            p = self._processes.pop((dcid, ep), None)
            if p is not None and node is not None and epoch is not None:
                p._mark_moved(node, epoch)
            return False
        if op == "restored":
            rid = _int(f.get("id"))
            data = f.get("data")
            if rid is not None and rid == self._waiting and isinstance(data, bytes):
                self._restored_pieces.setdefault(rid, []).append(data)
            return False
        rid = _int(f.get("id"))
        if rid is not None and rid in self._abandoned:
            self._abandoned.discard(rid)
            return False
        return True

    def _serve(self, f: Dict[str, Any]) -> None:
        """A request of the daemon: a snapshot is served by the endpoint's hook; grants are not supported here."""
        sid = f.get("sid")
        try:
            if f.get("op") != "snapshot":
                raise DvsError("EDVSBADVALUE", "this client holds no grants")
            p = self._processes.get((_int(f.get("dcid")), _int(f.get("endpoint"))))
            if p is None:
                raise DvsError("EDVSNOTBIND", f"endpoint {f.get('endpoint')} is not bound in this process")
            state = p._snapshot()
            if state is None:
                self._write({"sid": sid, "ok": True})
                return
            if not isinstance(state, (bytes, bytearray, memoryview)):
                raise DvsError("EDVSBADVALUE", "a snapshot hook must return bytes or None")
            state = bytes(state)
            if len(state) > MAX_SNAPSHOT_BYTES:
                raise DvsError("EDVSMSGSIZE", f"a snapshot may hold at most {MAX_SNAPSHOT_BYTES} bytes")
            piece = self.max_frame_bytes - FRAME_OVERHEAD_BYTES
            at = 0
            while len(state) - at > piece:
                self._write({"sid": sid, "ok": True, "more": True, "data": state[at : at + piece]})
                at += piece
            self._write({"sid": sid, "ok": True, "data": state[at:]})
        except DvsError as e:
            self._answer_error(sid, e)
        except Exception as e:  # a faulty hook refuses instead of breaking the connection
            self._answer_error(sid, DvsError("EDVSIO", f"snapshot hook failed: {e}"))

    def _answer_error(self, sid: Any, e: DvsError) -> None:
        if self._closed is None:
            self._write({"sid": sid, "ok": False, "error": e.to_wire()})


def _env_int(name: str) -> Optional[int]:
    v = os.environ.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise DvsError("EDVSBADVALUE", f"{name} must be an integer, got {v!r}") from None

"""A dependency-free TensorBoard event-file writer for scalars (TFRecord framing, hand-encoded protobuf)."""

from __future__ import annotations

import math
import os
import socket
import struct
import time
from pathlib import Path
from typing import BinaryIO, Optional

_CRC32C_POLY = 0x82F63B78  # Castagnoli, reflected


def _make_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC32C_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _make_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of `data`, as used by TFRecord files."""
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The TFRecord 'masked' CRC: rotate right by 15 and add a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
    """Frame one record: uint64 length, masked crc of length, data, masked crc of data (little endian)."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


# --- minimal protobuf encoding (only the wire types an Event needs) ---

def _varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF  # negative int64 -> two's complement, 10 bytes
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _float32(value: float) -> bytes:
    try:
        return struct.pack("<f", value)
    except OverflowError:  # finite double beyond float32 range
        return struct.pack("<f", math.copysign(math.inf, value))


def encode_event(wall_time: float, step: int = 0, file_version: Optional[str] = None,
                 scalars: Optional[dict[str, float]] = None) -> bytes:
    """Serialise a tensorflow `Event`: wall_time=1 (double), step=2, file_version=3, summary=5."""
    msg = _key(1, 1) + struct.pack("<d", wall_time) + _key(2, 0) + _varint(int(step))
    if file_version is not None:
        msg += _length_delimited(3, file_version.encode("utf-8"))
    if scalars:
        # Summary.value=1 (repeated Value); Value.tag=1 (string), Value.simple_value=2 (float)
        summary = b"".join(
            _length_delimited(1, _length_delimited(1, tag.encode("utf-8")) + _key(2, 5) + _float32(value))
            for tag, value in scalars.items())
        msg += _length_delimited(5, summary)
    return msg


class EventWriter:
    """Appends scalar summaries to `events.out.tfevents.<time>.<host>.<pid>.<n><suffix>` in `logdir`."""

    _counter = 0  # distinguishes writers created by one process within the same second

    def __init__(self, logdir: str | Path, filename_suffix: str = ""):
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        EventWriter._counter += 1
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                f"{os.getpid()}.{EventWriter._counter}{filename_suffix}")
        self.path = self.logdir / name
        self._file: Optional[BinaryIO] = open(self.path, "wb")
        self._write(encode_event(time.time(), 0, file_version="brain.Event:2"))
        self.flush()

    def _write(self, event: bytes) -> None:
        if self._file is None:
            raise ValueError(f"event writer for {self.path.name} is closed")
        self._file.write(tfrecord(event))

    def add_scalar(self, tag: str, value: float, step: int, wall_time: float | None = None) -> None:
        self.add_scalars({tag: value}, step, wall_time)

    def add_scalars(self, values: dict[str, float], step: int, wall_time: float | None = None) -> None:
        """Write all `values` (tag -> number) as one event at `step`."""
        if values:
            scalars = {str(tag): float(value) for tag, value in values.items()}
            self._write(encode_event(time.time() if wall_time is None else wall_time, step, scalars=scalars))

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

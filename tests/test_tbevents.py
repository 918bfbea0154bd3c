"""Tests for the dependency-free TensorBoard event writer."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest

from gdas.engine.tbevents import EventWriter, crc32c, encode_event, masked_crc32c


def _read_records(path: Path) -> list[bytes]:
    """Parse TFRecord framing, checking both masked CRCs of every record."""
    data = path.read_bytes()
    records, pos = [], 0
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (len_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        assert len_crc == masked_crc32c(header)
        payload = data[pos + 12:pos + 12 + length]
        (data_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        assert data_crc == masked_crc32c(payload)
        records.append(payload)
        pos += 16 + length
    assert pos == len(data)
    return records


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(buf: bytes) -> list[tuple[int, object]]:
    out, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack("<d", buf[pos:pos + 8])[0], pos + 8
        elif wire == 5:
            value, pos = struct.unpack("<f", buf[pos:pos + 4])[0], pos + 4
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        out.append((field, value))
    return out


def _decode_event(buf: bytes) -> dict:
    event: dict = {"scalars": {}}
    for field, value in _fields(buf):
        if field == 1:
            event["wall_time"] = value
        elif field == 2:
            event["step"] = value - (1 << 64) if value >= 1 << 63 else value
        elif field == 3:
            event["file_version"] = value.decode()
        elif field == 5:
            for vf, vbuf in _fields(value):
                assert vf == 1
                parts = dict(_fields(vbuf))
                event["scalars"][parts[1].decode()] = parts[2]
    return event


def test_crc32c_known_vectors():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros
    assert crc32c(b"\xff" * 32) == 0x62A8AB43  # RFC 3720 B.4: 32 bytes of 0xff
    assert crc32c(bytes(range(32))) == 0x46DD794E  # RFC 3720 B.4: incrementing


def test_written_file_decodes_with_valid_crcs(tmp_path):
    with EventWriter(tmp_path / "tb", filename_suffix=".search") as writer:
        writer.add_scalar("train/loss", 1.5, step=0, wall_time=123.25)
        writer.add_scalars({"train/acc": 0.25, "tau": 9.5}, step=7)
        writer.add_scalar("neg", -2.0, step=-3)
        writer.add_scalar("huge", 1e300, step=8)
        writer.add_scalar("nan", float("nan"), step=9)
    files = list((tmp_path / "tb").iterdir())
    assert len(files) == 1
    path = files[0]
    assert path.name.startswith("events.out.tfevents.") and path.name.endswith(".search")
    assert path == writer.path
    events = [_decode_event(r) for r in _read_records(path)]
    assert events[0]["file_version"] == "brain.Event:2" and not events[0]["scalars"]
    assert events[1] == {"wall_time": 123.25, "step": 0, "scalars": {"train/loss": 1.5}}
    assert events[2]["step"] == 7 and events[2]["scalars"] == {"train/acc": 0.25, "tau": 9.5}
    assert events[3]["step"] == -3 and events[3]["scalars"] == {"neg": -2.0}
    assert events[4]["scalars"]["huge"] == math.inf
    assert math.isnan(events[5]["scalars"]["nan"])
    assert len(events) == 6


def test_encode_event_matches_protobuf_bytes():
    # wall_time=1.0 (field 1, fixed64), step=300 (field 2 varint 0xac 0x02), one scalar "a"=0.5
    got = encode_event(1.0, 300, scalars={"a": 0.5})
    expected = (b"\x09" + struct.pack("<d", 1.0) + b"\x10\xac\x02"
                + b"\x2a\x0a" + b"\x0a\x08" + b"\x0a\x01a" + b"\x15" + struct.pack("<f", 0.5))
    assert got == expected


def test_flush_makes_events_visible_before_close(tmp_path):
    writer = EventWriter(tmp_path)
    writer.add_scalar("x", 3.0, step=1)
    writer.flush()
    events = [_decode_event(r) for r in _read_records(writer.path)]
    assert events[-1]["scalars"] == {"x": 3.0}
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError):
        writer.add_scalar("x", 1.0, step=2)


def test_two_writers_in_same_dir_use_distinct_files(tmp_path):
    with EventWriter(tmp_path) as a, EventWriter(tmp_path) as b:
        assert a.path != b.path
    assert len(list(tmp_path.iterdir())) == 2


def test_tensorboard_reads_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with EventWriter(tmp_path) as writer:
        for step in range(5):
            writer.add_scalars({"loss": 2.0 - 0.25 * step, "acc/top1": 10.0 * step}, step=step)
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["acc/top1", "loss"]
    loss = acc.Scalars("loss")
    assert [e.step for e in loss] == [0, 1, 2, 3, 4]
    assert [e.value for e in loss] == pytest.approx([2.0, 1.75, 1.5, 1.25, 1.0])
    assert [e.value for e in acc.Scalars("acc/top1")] == pytest.approx([0, 10, 20, 30, 40])


def test_bytes_equal_reference_protobuf():
    pytest.importorskip("tensorboard")
    from tensorboard.compat.proto import event_pb2

    ref = event_pb2.Event(wall_time=1.5, step=-3)
    ref.summary.value.add(tag="a/b", simple_value=0.5)
    ref.summary.value.add(tag="ü", simple_value=2.0)
    assert encode_event(1.5, -3, scalars={"a/b": 0.5, "ü": 2.0}) == ref.SerializeToString()

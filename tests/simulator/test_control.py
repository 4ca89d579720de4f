"""The simulator's control interface and `smppguard simulate mo`, as the README shows them: inject an MO, see it
queued until a receiver binds, or delivered to one."""

from __future__ import annotations

import asyncio
import json
import struct

from click.testing import CliRunner

from smppguard.cli import main
from smppguard.simulator import Simulator
from smppguard.smpp.commands import CommandId
from smppguard.smpp.fields import encode_body, parse_body
from smppguard.smpp.pdu import build


async def http(address, method: str, path: str, body: bytes = b"") -> tuple[int, object]:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    raw = await reader.read()
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


async def read_pdu(reader) -> tuple[int, int, int, bytes]:
    length, command_id, status, seq = struct.unpack(">IIII", await reader.readexactly(16))
    return command_id, status, seq, await reader.readexactly(length - 16)


def mo(address, *args) -> str:
    result = CliRunner().invoke(main, ["simulate", "--control", f"{address[0]}:{address[1]}", "mo", *args])
    assert result.exit_code == 0, result.output
    return result.output


async def test_simulate_mo_is_queued_until_a_receiver_binds_then_delivered():
    sim = Simulator()
    await sim.start("127.0.0.1", 0, control=("127.0.0.1", 0))
    try:
        control = sim.control_address
        out = await asyncio.to_thread(mo, control, "--from", "+8613800138000", "--to", "10690000", "--text", "退订")
        assert out == "queued until a receiver binds\n"
        reader, writer = await asyncio.open_connection(*sim.address)
        writer.write(build(CommandId.BIND_RECEIVER, 1, encode_body(CommandId.BIND_RECEIVER, system_id="acme")))
        assert (await read_pdu(reader))[:3] == (CommandId.BIND_RECEIVER_RESP, 0, 1)
        cid, _status, _seq, body = await asyncio.wait_for(read_pdu(reader), 5)  # the queued one, at bind
        fields = parse_body(cid, body)
        assert (cid, fields["source_addr"], fields["destination_addr"]) == (CommandId.DELIVER_SM, "+8613800138000",
                                                                            "10690000")
        assert (fields["data_coding"], fields["short_message"].decode("utf-16-be")) == (8, "退订")
        out = await asyncio.to_thread(mo, control, "--from", "8613800138001", "--to", "1069", "--text", "T")
        assert out == "delivered\n"
        cid, _status, _seq, body = await asyncio.wait_for(read_pdu(reader), 5)
        assert parse_body(cid, body)["short_message"] == b"T"  # GSM: data_coding 0
        writer.close()
    finally:
        await sim.stop()


async def test_control_answers_health_messages_and_refuses_bad_requests():
    sim = Simulator()
    await sim.start("127.0.0.1", 0, control=("127.0.0.1", 0))
    try:
        control = sim.control_address
        assert await http(control, "GET", "/health") == (200, "ok")
        assert await http(control, "GET", "/messages") == (200, [])
        status, answer = await http(control, "POST", "/mo", b'{"from": "1"}')
        assert status == 400 and "expected JSON" in answer["error"]
        assert (await http(control, "POST", "/mo", b"not json"))[0] == 400
        assert await http(control, "GET", "/nothing") == (404, {"error": "no such endpoint: GET /nothing"})
        status, answer = await http(control, "POST", "/mo", b"x" * (64 * 1024 + 1))
        assert (status, answer) == (400, {"error": "body too large"})
    finally:
        await sim.stop()


def test_simulate_mo_without_a_simulator_says_where_it_looked():
    result = CliRunner().invoke(main, ["simulate", "--control", "127.0.0.1:9", "mo", "--from", "1", "--to", "2",
                                       "--text", "T"])
    assert result.exit_code == 1
    assert "cannot reach the simulator's control interface at 127.0.0.1:9" in result.output


async def test_the_simulator_keeps_a_bounded_number_of_messages_and_queued_mo():
    from smppguard.config import SimulatorConfig

    sim = Simulator(SimulatorConfig(keep=5, max_queued_mo=3))
    await sim.start("127.0.0.1", 0, control=("127.0.0.1", 0))
    try:
        control = sim.control_address
        for _ in range(3):
            assert (await http(control, "POST", "/mo", b'{"from": "1", "to": "2", "text": "T"}'))[0] == 200
        status, answer = await http(control, "POST", "/mo", b'{"from": "1", "to": "2", "text": "T"}')
        assert status == 503 and "max_queued_mo" in answer["error"]
        result = await asyncio.to_thread(CliRunner().invoke, main, [
            "simulate", "--control", f"{control[0]}:{control[1]}", "mo", "--from", "1", "--to", "2", "--text", "T"])
        assert result.exit_code == 1 and "the simulator refused it: 3 MO messages already wait" in result.output
        reader, writer = await asyncio.open_connection(*sim.address)
        writer.write(build(CommandId.BIND_TRANSMITTER, 1, encode_body(CommandId.BIND_TRANSMITTER, system_id="a")))
        await read_pdu(reader)
        for seq in range(2, 22):
            writer.write(build(CommandId.SUBMIT_SM, seq, encode_body(CommandId.SUBMIT_SM, destination_addr=str(seq),
                                                                    short_message=b"x")))
            await read_pdu(reader)
        assert [r.fields["destination_addr"] for r in sim.received] == [str(s) for s in range(17, 22)]  # the latest
        status, messages = await http(control, "GET", "/messages")
        assert [m["destination"] for m in messages] == [str(s) for s in range(17, 22)]
        writer.close()
    finally:
        await sim.stop()

"""Many concurrent clients (python3-websockets, asyncio), every byte checked."""

import asyncio
import os

import pytest

import harness

pytestmark = [pytest.mark.slow, pytest.mark.deadline(180)]

CLIENTS = 200
PER_CLIENT = 64 * 1024
MESSAGES = 4


async def one_client(url, i):
    data = os.urandom(PER_CLIENT)
    step = PER_CLIENT // MESSAGES
    msgs = [data[j:j + step] for j in range(0, PER_CLIENT, step)]
    got = await harness.ws_echo_session(url + "?client=%d" % i, msgs)
    harness.assert_same(got, data, "client %d" % i)


async def run_all(url):
    results = await asyncio.gather(*(one_client(url, i) for i in range(CLIENTS)),
                                   return_exceptions=True)
    failures = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert not failures, "%d of %d clients failed; first: client %d: %r" % (
        len(failures), CLIENTS, failures[0][0], failures[0][1])


def test_200_concurrent_echo_clients(echo_gw):
    asyncio.run(run_all(echo_gw.url("/load")))
    assert echo_gw.echo.count == CLIENTS

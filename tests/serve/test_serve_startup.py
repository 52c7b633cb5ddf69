"""`python -m pfd.serve` checks its port before anything loads (issue 31): a port in use was uvicorn's own
message and exit status 3 after the model had loaded, `--port 99999` a traceback. Both are one line and
exit status 2 now, before the index is even read (here: an index that does not exist)."""
import socket

import pytest

from pfd.serve.__main__ import main

from engine_tiny import exit_status


@pytest.fixture
def busy_port():
    """A loopback port another program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_a_bad_or_busy_port_is_one_line_before_the_index_and_model_load(busy_port, tmp_path, capsys):
    missing = str(tmp_path / "no_index")
    for port, words in (("99999", "--port 99999: expected a TCP port number from 0 to 65535"),
                        ("-1", "--port -1: expected a TCP port number"),
                        (str(busy_port), f"--host 127.0.0.1 --port {busy_port}: cannot listen there (Address "
                                         "already in use); choose another --port")):
        capsys.readouterr()
        assert exit_status(main, ["--index", missing, "--port", port]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {words}") and len(err.splitlines()) == 1, err
    capsys.readouterr()
    assert exit_status(main, ["--index", missing, "--host", "no.such.host.invalid"]) == 2
    assert capsys.readouterr().err.startswith("error: --host no.such.host.invalid: not an address of this machine")
    assert exit_status(main, ["--index", missing, "--port", "0"]) == 2  # a free port: on to the index, refused
    assert "no_index" in capsys.readouterr().err

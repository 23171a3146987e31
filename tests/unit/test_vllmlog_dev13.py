"""The classifier's rules written from corpus/dev13, each test citing its log and the public thread it came from.
None of these logs is in the frozen test half (tests/logcorpus.py), which no test reads. The rules read a traceback's
structure (which client frames open a connection rather than read an answer) and torch's own message about the
driver, never one log's sentence. Every text is read by both of troubleshoot's readers, which must agree."""

from __future__ import annotations

from qwenops.vllmlog.classify import frame_phase
from tests.logcorpus import LOGS
from tests.logreaders import findings_of_both_readers, found

DEV13 = LOGS / "corpus" / "dev13"


def categories_of(lines: list[str]) -> list[str]:
    return [f.category for f in findings_of_both_readers("\n".join(lines))]


def test_a_client_traceback_through_connection_set_up_is_no_read_timeout() -> None:
    """open-webui/open-webui#11440 (dev13 client_config 018): Open WebUI in a container told the vLLM server is at
    127.0.0.1:8000; aiohttp's "ClientConnectorError: Cannot connect to host 127.0.0.1:8000" and a traceback through
    aiohttp's connector (`_wrap_create_connection`) and aiohappyeyeballs' `start_connection`, cut before its last
    line. Those frames open the connection: nothing was read, nothing timed out. It was `client_timeout` (aiohttp's
    files are a client's reading phase); now the client could not connect, `unclassified` with the base-URL fix. A
    client's cut traceback through reading frames is still a read."""
    [finding] = found(DEV13 / "client_config" / "018_open_webui_docker_connect_127001_8000_vllm_on_host_client_"
                      "connector_error.log")
    assert finding.category == "unclassified" and "could not connect" in finding.title
    assert "base URL" in finding.fix and "container" in finding.fix
    connect = [("/usr/lib/python3.11/site-packages/aiohttp/connector.py", "_wrap_create_connection"),
               ("/usr/lib/python3.11/site-packages/aiohappyeyeballs/impl.py", "start_connection")]
    assert frame_phase(connect) == "client_connect"
    assert frame_phase([("/usr/lib/python3/site-packages/httpcore/_sync/connection.py", "_connect"),
                        ("/usr/lib/python3/site-packages/httpcore/_backends/sync.py", "connect_tcp")]) \
        == "client_connect"
    reading = [("/usr/lib/python3/site-packages/httpcore/_sync/http11.py", "_receive_event")]
    assert frame_phase(reading) == "client_read"
    cut_read = ["Traceback (most recent call last):",
                '  File "/venv/lib/python3.12/site-packages/httpx/_transports/default.py", line 101, in '
                'map_httpcore_exceptions',
                '  File "/venv/lib/python3.12/site-packages/httpcore/_sync/http11.py", line 217, in _receive_event',
                "    event = self._h11_state.next_event()"]
    assert categories_of(cut_read) == ["client_timeout"]
    cut_connect = ["Traceback (most recent call last):",
                   '  File "/venv/lib/python3.12/site-packages/urllib3/connection.py", line 198, in _new_conn',
                   "    sock = connection.create_connection(",
                   '  File "/venv/lib/python3.12/site-packages/urllib3/util/connection.py", line 85, in '
                   'create_connection',
                   "    raise err"]
    assert categories_of(cut_connect) == ["unclassified"]


def test_the_driver_too_old_in_the_reporters_words_is_a_driver_mismatch() -> None:
    """vllm-project/vllm#1907 (dev13 cuda_driver_mismatch 010): under a screenshot, "It shows that the NVIDIA driver
    is too old" on a CUDA 11.6 machine: torch's "The NVIDIA driver on your system is too old" said without "on your
    system". Now `cuda_driver_mismatch`, as torch's message is; vllm-project/vllm#1772 (009), torch's own line,
    still is."""
    [finding] = found(DEV13 / "cuda_driver_mismatch" / "010_v02x_cuda_116_lab_machine_driver_too_old_screenshot_"
                      "reply.log")
    assert finding.category == "cuda_driver_mismatch" and finding.severity == "error"
    assert [f.category for f in found(DEV13 / "cuda_driver_mismatch" / "009_v02x_build_from_source_nvidia_driver_"
                                      "too_old_cuda114_screenshots.log")] == ["cuda_driver_mismatch"]
    assert categories_of(["RuntimeError: The NVIDIA driver version is too old (found version 11040)."]) \
        == ["cuda_driver_mismatch"]
    for other in ("the driver is fine, the NVIDIA driver on this host is 550", "my NVIDIA driver is new"):
        assert categories_of([other]) == [], other

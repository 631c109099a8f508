"""The management API client against a loopback double that answers the way
RabbitMQ 3.10 does (error bodies included): one line per failure, one request
per listing whatever the number of queues, pages followed when filtering."""
import socket
import threading

import pytest

from autoremedy.clients import rabbitmq

import rmq_helpers as rh


def api(url, timeout=2.0):
    return rabbitmq.Api(url, "guest", "guest", timeout=timeout)


def test_a_listing_of_5000_queues_is_one_request(double):
    rows = [{"name": f"q{i}", "vhost": "/", "messages": i} for i in range(5000)]
    double.set("/api/queues", rows)
    client = api(double.url)
    got = client.queues(columns=["name", "vhost", "messages"], totals_only=True)
    assert len(got) == 5000 and client.requests == 1
    method, path = double.requests[0]
    assert method == "GET"
    assert path == "/api/queues?columns=name%2Cvhost%2Cmessages&disable_stats=true&enable_queue_totals=true"


def test_a_name_filter_pages_through_the_server_side_filter(double):
    # The API filters by name only in paginated mode (page_size at most 500).
    for number, items in ((1, [{"name": "q1"}]), (2, [{"name": "q2"}])):
        path = "/api/queues/%2F?page={}&columns=name&name=%5Eq&use_regex=true&page_size=500".format(number)
        double.set(path, {"items": items, "page": number, "page_count": 2, "filtered_count": 2})
    client = api(double.url)
    assert [r["name"] for r in client.queues("/", ["name"], name_regex="^q")] == ["q1", "q2"]
    assert client.requests == 2


@pytest.mark.parametrize("status, body, kind, text", [
    (401, {"error": "not_authorized", "reason": "Login failed"}, rabbitmq.ApiAuthError,
     "rejected the credentials of user 'guest' (401)"),
    (403, {"error": "not_authorised", "reason": "Not administrator user"}, rabbitmq.ApiAuthError,
     "is not allowed to GET /api/queues (403)"),
    (404, {"error": "Object Not Found", "reason": "Not Found"}, rabbitmq.NotFound, "not found (404)"),
    (500, {"error": "Internal Server Error", "reason": "{badarg,...}"}, rabbitmq.ApiError,
     "HTTP 500: {badarg,...}"),
    (503, b"<html>proxy says no</html>", rabbitmq.ApiError, "HTTP 503: <html>proxy says no</html>"),
    (200, b"{not json", rabbitmq.ApiError, "returned invalid JSON for /api/queues (HTTP 200, starts '{not json')"),
    (200, {"a": "dict"}, rabbitmq.ApiError, "/api/queues did not return a list"),
])
def test_every_failure_is_one_readable_line(double, status, body, kind, text):
    double.set("/api/queues", body, status=status)
    with pytest.raises(kind) as err:
        api(double.url).queues()
    assert text in str(err.value)
    assert "\n" not in str(err.value)


def test_nothing_listening_is_unavailable():
    with pytest.raises(rabbitmq.ApiUnavailable, match="unreachable: connection refused"):
        api(f"http://127.0.0.1:{rh.closed_port()}").get("overview")


def test_a_server_that_never_answers_times_out():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(5)                                # accepts the connection, never replies
    held = []
    threading.Thread(target=lambda: held.append(sock.accept()), daemon=True).start()
    try:
        with pytest.raises(rabbitmq.ApiUnavailable, match="timed out"):
            api(f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=0.5).get("overview")
    finally:
        sock.close()


def test_names_are_quoted_into_one_path_segment():
    assert rabbitmq.path("/", "reply_a/b c") == "%2F/reply_a%2Fb%20c"


def test_cli_calls_always_name_the_node():
    assert rabbitmq.ctl("rabbitmqctl", "rmq@h", "list_users") == ["rabbitmqctl", "-q", "-n", "rmq@h", "list_users"]
    with pytest.raises(ValueError):
        rabbitmq.ctl("rm", "rmq@h", "-rf")

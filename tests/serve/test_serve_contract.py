"""The service's JSON contract, in this process with FastAPI's TestClient (no server, so in `make test-fast`):
/openapi.json names the routes and the answers' schemas, and real answers (health, a search by gallery
number and by upload, each kind of error) validate against those schemas and hold only their fields."""
import json

import pytest
from fastapi.testclient import TestClient
from serve_tiny import build_tiny_index

from pfd.serve import create_app
from pfd.serve.schemas import ErrorAnswer, Health, SearchAnswer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tiny = build_tiny_index(tmp_path_factory.mktemp("contract"))
    return dict(tiny, client=TestClient(create_app(tiny["gallery"])))


@pytest.fixture(scope="module")
def openapi(tiny) -> dict:
    response = tiny["client"].get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def schema_name(openapi: dict, path: str, method: str, status: int) -> str:
    """The component schema a route's answer with `status` names."""
    content = openapi["paths"][path][method]["responses"][str(status)]["content"]
    return content["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]


def fields(openapi: dict, name: str) -> set[str]:
    return set(openapi["components"]["schemas"][name]["properties"])


def test_openapi_names_the_routes_and_their_answers(openapi):
    assert set(openapi["paths"]) == {"/api/health", "/api/search", "/api/gallery/{number}"}  # not the page
    assert schema_name(openapi, "/api/health", "get", 200) == "Health"
    assert schema_name(openapi, "/api/search", "post", 200) == "SearchAnswer"
    for status in (400, 404, 413, 422, 500):
        assert schema_name(openapi, "/api/search", "post", status) == "ErrorAnswer"
    assert schema_name(openapi, "/api/gallery/{number}", "get", 404) == "ErrorAnswer"
    assert "HTTPValidationError" not in openapi["components"]["schemas"]  # 422 answers are ErrorAnswers too
    assert fields(openapi, "Match") == {"rank", "index", "path", "id", "camera", "distance", "time", "url"}
    form = openapi["paths"]["/api/search"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    form_fields = openapi["components"]["schemas"][form["$ref"].rsplit("/", 1)[-1]]["properties"]
    assert set(form_fields) == {"image", "gallery", "k", "keypoints", "camera", "cameras", "exclude_camera",
                                "since", "until"}


def test_the_docs_page_reads_the_openapi_document(tiny):
    page = tiny["client"].get("/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text


def test_health_answers_its_schema(tiny, openapi):
    answer = tiny["client"].get("/api/health").json()
    assert set(answer) == fields(openapi, "Health")
    health = Health.model_validate(answer)
    assert health.gallery_size == len(tiny["gallery"]) == 79 and health.config_hash == tiny["model"].config_hash


def test_searches_answer_their_schema_with_gallery_search_s_ranking(tiny, openapi):
    client, gallery = tiny["client"], tiny["gallery"]
    path = gallery.meta["paths"][7]
    by_number = client.post("/api/search", data={"gallery": "7", "k": "5"})
    kps = tiny["model"].keypoints(path)[0]  # [17, 3] the keypoints Gallery.search uses for the file
    with open(path, "rb") as f:
        by_upload = client.post("/api/search", files={"image": ("q.jpg", f.read(), "image/jpeg")},
                                data={"k": "5", "keypoints": json.dumps(kps.tolist())})
    expected = [m.index for m in gallery.search(path, 5)]
    for response, source in ((by_number, "gallery"), (by_upload, "upload")):
        assert response.status_code == 200, response.text
        answer = response.json()
        assert set(answer) == fields(openapi, "SearchAnswer") and set(answer["query"]) == fields(openapi, "Query")
        assert all(set(m) == fields(openapi, "Match") for m in answer["matches"])
        result = SearchAnswer.model_validate(answer)
        assert result.query.source == source and [m.index for m in result.matches] == expected
    assert SearchAnswer.model_validate(by_number.json()).matches[0].index == 7  # the image itself comes first


@pytest.mark.parametrize("method, url, request_args, status", [
    ("post", "/api/search", {"data": {"gallery": "0", "k": "many"}}, 422),
    ("post", "/api/search", {"data": {"k": "3"}}, 400),  # neither an image nor a gallery number
    ("post", "/api/search", {"data": {"gallery": "0", "cameras": "one"}}, 400),
    ("get", "/api/gallery/100000", {}, 404),
    ("get", "/api/nothing", {}, 404),
])
def test_errors_answer_the_error_schema(tiny, method, url, request_args, status):
    response = getattr(tiny["client"], method)(url, **request_args)
    assert response.status_code == status
    answer = response.json()
    assert set(answer) == {"error"} and "\n" not in ErrorAnswer.model_validate(answer).error

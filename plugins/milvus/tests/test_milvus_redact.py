"""Credentials written inside a server uri never show: not in the store's repr, not in a
connection error (issue 11, item 11).  No server needed: the client is replaced."""

from __future__ import annotations

import pytest
from embedline.contracts import Secret, StoreSpec
from embedline.errors import StoreError
from pymilvus import MilvusException

import embedline_milvus._connect as connect_module
from embedline_milvus._store import MilvusStore

URI = "http://root:pa55word@milvus.example:19530/?token=qtok3n&timeout=5"
SECRETS = ("pa55word", "qtok3n", "t0ken-opt")


class _Client:
    def __init__(self, uri: str, token: str = "", db_name: str = ""):
        self.uri = uri

    def close(self) -> None:
        pass


class _Refusing:
    def __init__(self, uri: str, token: str = "", db_name: str = ""):
        raise MilvusException(message=f"Fail connecting to server on {uri}, token {token}: illegal connection params")


def spec(uri: str = URI) -> StoreSpec:
    return StoreSpec(plugin="milvus", options={"uri": uri, "token": Secret("t0ken-opt", "MILVUS_TOKEN")})


def test_repr_and_where_hide_the_password_and_token_parameters(monkeypatch):
    monkeypatch.setattr(connect_module, "MilvusClient", _Client)
    store = MilvusStore.open(spec())
    shown = repr(store) + str(store) + store._conn.where
    assert not any(secret in shown for secret in SECRETS), shown
    assert "root:***@milvus.example:19530" in shown and "token=***" in shown and "timeout=5" in shown


def test_a_connection_error_hides_the_password_token_and_uri_credentials(monkeypatch):
    monkeypatch.setattr(connect_module, "MilvusClient", _Refusing)
    with pytest.raises(StoreError) as err:
        MilvusStore.open(spec())
    message = str(err.value)
    assert message.startswith("cannot connect to Milvus at http://root:***@milvus.example:19530"), message
    assert not any(secret in message for secret in SECRETS), message

from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RelayRequest(_message.Message):
    __slots__ = ("start", "upgraded", "signal_request", "client_gone")
    START_FIELD_NUMBER: _ClassVar[int]
    UPGRADED_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_REQUEST_FIELD_NUMBER: _ClassVar[int]
    CLIENT_GONE_FIELD_NUMBER: _ClassVar[int]
    start: SessionStart
    upgraded: Upgraded
    signal_request: bytes
    client_gone: ClientGone
    def __init__(self, start: _Optional[_Union[SessionStart, _Mapping]] = ..., upgraded: _Optional[_Union[Upgraded, _Mapping]] = ..., signal_request: _Optional[bytes] = ..., client_gone: _Optional[_Union[ClientGone, _Mapping]] = ...) -> None: ...

class SessionStart(_message.Message):
    __slots__ = ("room_name", "grants_json", "params", "room_sid", "validate_only", "control_node_id")
    ROOM_NAME_FIELD_NUMBER: _ClassVar[int]
    GRANTS_JSON_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    ROOM_SID_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    CONTROL_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    room_name: str
    grants_json: str
    params: JoinParams
    room_sid: str
    validate_only: bool
    control_node_id: str
    def __init__(self, room_name: _Optional[str] = ..., grants_json: _Optional[str] = ..., params: _Optional[_Union[JoinParams, _Mapping]] = ..., room_sid: _Optional[str] = ..., validate_only: _Optional[bool] = ..., control_node_id: _Optional[str] = ...) -> None: ...

class JoinParams(_message.Message):
    __slots__ = ("single_pc", "auto_subscribe", "adaptive_stream", "client_info", "reconnect", "participant_sid", "reconnect_reason", "publisher_offer", "metadata", "attributes", "add_track_requests", "sync_state")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SINGLE_PC_FIELD_NUMBER: _ClassVar[int]
    AUTO_SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    ADAPTIVE_STREAM_FIELD_NUMBER: _ClassVar[int]
    CLIENT_INFO_FIELD_NUMBER: _ClassVar[int]
    RECONNECT_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_SID_FIELD_NUMBER: _ClassVar[int]
    RECONNECT_REASON_FIELD_NUMBER: _ClassVar[int]
    PUBLISHER_OFFER_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    ADD_TRACK_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    SYNC_STATE_FIELD_NUMBER: _ClassVar[int]
    single_pc: bool
    auto_subscribe: bool
    adaptive_stream: bool
    client_info: bytes
    reconnect: bool
    participant_sid: str
    reconnect_reason: int
    publisher_offer: bytes
    metadata: str
    attributes: _containers.ScalarMap[str, str]
    add_track_requests: _containers.RepeatedScalarFieldContainer[bytes]
    sync_state: bytes
    def __init__(self, single_pc: _Optional[bool] = ..., auto_subscribe: _Optional[bool] = ..., adaptive_stream: _Optional[bool] = ..., client_info: _Optional[bytes] = ..., reconnect: _Optional[bool] = ..., participant_sid: _Optional[str] = ..., reconnect_reason: _Optional[int] = ..., publisher_offer: _Optional[bytes] = ..., metadata: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., add_track_requests: _Optional[_Iterable[bytes]] = ..., sync_state: _Optional[bytes] = ...) -> None: ...

class Upgraded(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClientGone(_message.Message):
    __slots__ = ("aborted",)
    ABORTED_FIELD_NUMBER: _ClassVar[int]
    aborted: bool
    def __init__(self, aborted: _Optional[bool] = ...) -> None: ...

class RelayResponse(_message.Message):
    __slots__ = ("accepted", "refused", "signal_response", "closed")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    accepted: Accepted
    refused: Refused
    signal_response: bytes
    closed: Closed
    def __init__(self, accepted: _Optional[_Union[Accepted, _Mapping]] = ..., refused: _Optional[_Union[Refused, _Mapping]] = ..., signal_response: _Optional[bytes] = ..., closed: _Optional[_Union[Closed, _Mapping]] = ...) -> None: ...

class Accepted(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class Refused(_message.Message):
    __slots__ = ("status", "text")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    status: int
    text: str
    def __init__(self, status: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class Closed(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

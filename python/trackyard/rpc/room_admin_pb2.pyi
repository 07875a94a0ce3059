from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AdminCall(_message.Message):
    __slots__ = ("method", "request", "room_sid")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    ROOM_SID_FIELD_NUMBER: _ClassVar[int]
    method: str
    request: bytes
    room_sid: str
    def __init__(self, method: _Optional[str] = ..., request: _Optional[bytes] = ..., room_sid: _Optional[str] = ...) -> None: ...

class AdminResult(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: bytes
    error: TwirpError
    def __init__(self, response: _Optional[bytes] = ..., error: _Optional[_Union[TwirpError, _Mapping]] = ...) -> None: ...

class TwirpError(_message.Message):
    __slots__ = ("code", "msg", "meta")
    class MetaEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    MSG_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    code: str
    msg: str
    meta: _containers.ScalarMap[str, str]
    def __init__(self, code: _Optional[str] = ..., msg: _Optional[str] = ..., meta: _Optional[_Mapping[str, str]] = ...) -> None: ...

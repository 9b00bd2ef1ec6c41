"""TF Serving's JSON ⇄ tensor rules (TF_SERVING_REST.md §1.5, §1.6): conformance group C, json_tensor_test."""

import json
import math

import numpy as np
import pytest

from tfrs_mm.serving import codec
from tfrs_mm.serving.errors import ServingError, error_body, from_exception, http_status
from tfrs_mm.serving.json_text import format_float, parse_request

INT = {"default": "DT_INT32"}
C7_INPUTS = {
    "int_tensor": "DT_INT32",
    "str_tensor": "DT_STRING",
    "float_tensor": "DT_FLOAT",
    "dbl_tensor": "DT_DOUBLE",
}


def decode(body: str, input_dtypes):
    return codec.decode_predict_request(parse_request(body.encode()), input_dtypes)


def decode_error(body: str, input_dtypes) -> ServingError:
    with pytest.raises(ServingError) as raised:
        decode(body, input_dtypes)
    return raised.value


@pytest.mark.parametrize(
    "case, body, inputs, fmt, expected",
    [
        (
            "C1",
            '{"instances": [[1,2],[3,4],[5,6]]}',
            INT,
            codec.ROW,
            {"default": np.int32([[1, 2], [3, 4], [5, 6]])},
        ),
        (
            "C2",
            '{"instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]}',
            {"default": "DT_FLOAT"},
            codec.ROW,
            {"default": np.float32([1, 2, 3, 4, 5.003, 0.007, 0])},
        ),
        (
            "C3",
            '{"instances": [1435774380]}',
            {"default": "DT_FLOAT"},
            codec.ROW,
            {"default": np.float32([1435774380])},
        ),
        (
            "C4",
            '{"instances": [ { "b64" : "aGVsbG8=" }, { "b64": "d29ybGQ=" } ]}',
            {"default": "DT_STRING"},
            codec.ROW,
            {"default": np.array([b"hello", b"world"], dtype=object)},
        ),
        (
            "C5",
            '{"instances": [ [{ "b64" : "aGVsbG8=" }], [{ "b64": "d29ybGQ=" }] ]}',
            {"default": "DT_STRING"},
            codec.ROW,
            {"default": np.array([[b"hello"], [b"world"]], dtype=object)},
        ),
        (
            "C6",
            '{"instances": [ { "default": [ [{ "b64" : "aGVsbG8=" }], [{ "b64": "d29ybGQ=" }] ] } ]}',
            {"default": "DT_STRING"},
            codec.ROW,
            {"default": np.array([[[b"hello"], [b"world"]]], dtype=object)},
        ),
        (
            "C8 named",
            '{"inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]]}}',
            {"int_tensor": "DT_INT32"},
            codec.COLUMNAR,
            {"int_tensor": np.int32([[[1, 2], [3, 4], [5, 6]]])},
        ),
        (
            "C8 bare",
            '{"inputs": [[[1,2],[3,4],[5,6]]]}',
            {"int_tensor": "DT_INT32"},
            codec.COLUMNAR,
            {"int_tensor": np.int32([[[1, 2], [3, 4], [5, 6]]])},
        ),
        (
            "C9",
            '{"inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]], "str_tensor": ["foo","bar"], '
            '"bin_tensor": { "b64" : "aGVsbG8=" }}}',
            {"int_tensor": "DT_INT32", "str_tensor": "DT_STRING", "bin_tensor": "DT_STRING"},
            codec.COLUMNAR,
            {
                "int_tensor": np.int32([[[1, 2], [3, 4], [5, 6]]]),
                "str_tensor": np.array([b"foo", b"bar"], dtype=object),
                "bin_tensor": np.array(b"hello", dtype=object),
            },
        ),
        ("scalar", '{"inputs": 5}', INT, codec.COLUMNAR, {"default": np.int32(5)}),
        (
            "extra keys ignored in columnar",
            '{"inputs": {"default": [1], "unused": "x"}}',
            INT,
            codec.COLUMNAR,
            {"default": np.int32([1])},
        ),
        (
            "int64, uint64 and bool ranges",
            '{"inputs": {"a": [-9223372036854775808], "b": [18446744073709551615], "c": [true, false]}}',
            {"a": "DT_INT64", "b": "DT_UINT64", "c": "DT_BOOL"},
            codec.COLUMNAR,
            {"a": np.int64([-(2**63)]), "b": np.uint64([2**64 - 1]), "c": np.array([True, False])},
        ),
    ],
)
def test_decodes_like_json_tensor_test(case, body, inputs, fmt, expected):
    got_format, arrays = decode(body, inputs)
    assert got_format == fmt
    assert sorted(arrays) == sorted(expected)
    for name, want in expected.items():
        assert arrays[name].shape == want.shape, name
        assert arrays[name].dtype == want.dtype, name
        np.testing.assert_array_equal(arrays[name], want)


def test_c7_row_format_with_four_named_inputs_and_nan_infinity():
    body = (
        '{"instances": [{"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo","bar"], '
        '"float_tensor": [1.0, NaN], "dbl_tensor": [NaN]}, {"int_tensor": [[7,8],[9,0],[1,2]], '
        '"str_tensor": ["baz","bat"], "float_tensor": [2.0, Infinity], "dbl_tensor": [2.0]}]}'
    )
    fmt, arrays = decode(body, C7_INPUTS)
    assert fmt == codec.ROW
    assert arrays["int_tensor"].shape == (2, 3, 2) and arrays["int_tensor"].dtype == np.int32
    np.testing.assert_array_equal(
        arrays["str_tensor"], np.array([[b"foo", b"bar"], [b"baz", b"bat"]], dtype=object)
    )
    np.testing.assert_array_equal(arrays["float_tensor"], np.float32([[1, np.nan], [2, np.inf]]))
    assert arrays["dbl_tensor"].dtype == np.float64 and arrays["dbl_tensor"].shape == (2, 1)
    assert math.isnan(arrays["dbl_tensor"][0, 0]) and arrays["dbl_tensor"][1, 0] == 2.0


def test_out_of_range_double_becomes_infinity_for_float32():
    _, arrays = decode('{"instances": [1e300, -1e300]}', {"x": "DT_FLOAT"})
    np.testing.assert_array_equal(arrays["x"], np.float32([np.inf, -np.inf]))


@pytest.mark.parametrize(
    "case, body, inputs, code, substring",
    [
        ("C10a", "", INT, "INVALID_ARGUMENT", "document is empty"),
        (
            "C10b",
            '{"signature_name": 5, "instances": [1]}',
            INT,
            "INVALID_ARGUMENT",
            "must be a string value",
        ),
        ("C10c", '{"instances": [1], "inputs": [1]}', INT, "INVALID_ARGUMENT", "Not formatted correctly"),
        ("C10d", '{"instances": [[1,2],[3,4],[5,6,7]]}', INT, "INVALID_ARGUMENT", "Expecting tensor size"),
        ("C10e", '{"instances": [[1,2],[3,4],[[5,6]]]}', INT, "INVALID_ARGUMENT", "Expecting shape"),
        ("C10f", '{"instances": [1, [1]]}', INT, "INVALID_ARGUMENT", "Expecting shape"),
        ("C10g", '{"instances": [[1,2],["a","b"]]}', INT, "INVALID_ARGUMENT", "not of expected type"),
        (
            "C11 shapes differ",
            '{"instances": [{"int_tensor": [[1,2]], "str_tensor": "a"}, '
            '{"int_tensor": [1,2], "str_tensor": "b"}]}',
            {"int_tensor": "DT_INT32", "str_tensor": "DT_STRING"},
            "INVALID_ARGUMENT",
            "Expecting shape",
        ),
        (
            "C11 sizes differ",
            '{"instances": [{"int_tensor": [1,2], "str_tensor": "a"}, '
            '{"int_tensor": [1,2,3], "str_tensor": "b"}]}',
            {"int_tensor": "DT_INT32", "str_tensor": "DT_STRING"},
            "INVALID_ARGUMENT",
            "Expecting tensor size",
        ),
        (
            "C11 object then list",
            '{"instances": [{"int_tensor": [1,2], "str_tensor": "a"}, [1, 2]]}',
            {"int_tensor": "DT_INT32", "str_tensor": "DT_STRING"},
            "INVALID_ARGUMENT",
            "Expecting object but got list",
        ),
        (
            "C11 list then object",
            '{"instances": ["a", {"str_tensor": "b"}]}',
            {"str_tensor": "DT_STRING"},
            "INVALID_ARGUMENT",
            "Expecting value/list but got object",
        ),
        (
            "int rejects 1.0",
            '{"instances": [1.0]}',
            INT,
            "INVALID_ARGUMENT",
            "Type: Number is not of expected type: int32",
        ),
        (
            "int64 rejects 1.0",
            '{"inputs": [1.0]}',
            {"x": "DT_INT64"},
            "INVALID_ARGUMENT",
            "not of expected type: int64",
        ),
        ("int32 range", '{"inputs": [2147483648]}', INT, "INVALID_ARGUMENT", "not of expected type: int32"),
        (
            "bool only true/false",
            '{"inputs": [1]}',
            {"x": "DT_BOOL"},
            "INVALID_ARGUMENT",
            "not of expected type: bool",
        ),
        (
            "null",
            '{"inputs": [null]}',
            {"x": "DT_FLOAT"},
            "INVALID_ARGUMENT",
            "Type: Null is not of expected type",
        ),
        (
            "b64 only for strings",
            '{"inputs": [{"b64": "AAAA"}]}',
            {"x": "DT_FLOAT"},
            "INVALID_ARGUMENT",
            "Type: Object",
        ),
        (
            "bad b64",
            '{"inputs": [{"b64": "!!"}]}',
            {"x": "DT_STRING"},
            "INVALID_ARGUMENT",
            "Unable to base64 decode",
        ),
        (
            "b64 object with two keys",
            '{"inputs": [{"b64": "AAAA", "x": 1}]}',
            {"x": "DT_STRING"},
            "INVALID_ARGUMENT",
            "not formatted correctly for base64 data",
        ),
        ("D4", '{"foo": 1}', INT, "INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key"),
        ("D5", '{"instances": []}', INT, "INVALID_ARGUMENT", "No values in 'instances' array"),
        (
            "instances not a list",
            '{"instances": 1}',
            INT,
            "INVALID_ARGUMENT",
            "Expecting 'instances' to be an list/array",
        ),
        (
            "row: unknown input",
            '{"instances": [{"default": 1, "other": 2}]}',
            INT,
            "INVALID_ARGUMENT",
            "Failed to process element: 0 key: other of 'instances' list. Error: INVALID_ARGUMENT: "
            "JSON object: does not have named input: other",
        ),
        (
            "row: missing input",
            '{"instances": [{"int_tensor": 1}]}',
            {"int_tensor": "DT_INT32", "str_tensor": "DT_STRING"},
            "INVALID_ARGUMENT",
            "keys must be equal to: int_tensor,str_tensor",
        ),
        (
            "columnar: missing input",
            '{"inputs": {"int_tensor": 1}}',
            {"int_tensor": "DT_INT32", "str_tensor": "DT_STRING"},
            "INVALID_ARGUMENT",
            "Missing named input: str_tensor in 'inputs' object.",
        ),
        (
            "row: plain list for several inputs",
            '{"instances": [1]}',
            {"a": "DT_INT32", "b": "DT_INT32"},
            "INVALID_ARGUMENT",
            "instances is a plain list, but expecting list of objects as multiple input tensors",
        ),
        (
            "columnar: plain value for several inputs",
            '{"inputs": [1]}',
            {"a": "DT_INT32", "b": "DT_INT32"},
            "INVALID_ARGUMENT",
            "inputs is a plain value/list, but expecting an object as multiple input tensors",
        ),
        (
            "ragged columnar",
            '{"inputs": [[1, 2], [3]]}',
            INT,
            "INVALID_ARGUMENT",
            "Encountered list at unexpected size",
        ),
        (
            "unsupported dtype, columnar: 501",
            '{"inputs": [1.0]}',
            {"h": "DT_HALF"},
            "UNIMPLEMENTED",
            "to type: half",
        ),
        (
            "unsupported dtype, row: 400",
            '{"instances": [1.0]}',
            {"h": "DT_HALF"},
            "INVALID_ARGUMENT",
            "to type: half",
        ),
        (
            "no inputs in signature",
            '{"instances": [1]}',
            {},
            "INVALID_ARGUMENT",
            "Failed to get input map for signature",
        ),
    ],
)
def test_decode_errors(case, body, inputs, code, substring):
    if case == "C10a" or case == "C10b":
        # Parse and signature_name errors are raised before the codec sees tensors.
        with pytest.raises(ServingError) as raised:
            document = parse_request(body.encode())
            codec.signature_name(document)
        error = raised.value
    else:
        error = decode_error(body, inputs)
    assert error.code == code
    assert substring in error.message


def test_d6_wrong_dtype_on_a_named_field_is_wrapped_with_the_nested_status():
    error = decode_error('{"instances": [{"x": "NaN"}]}', {"x": "DT_FLOAT"})
    assert error.message == (
        "Failed to process element: 0 key: x of 'instances' list. Error: INVALID_ARGUMENT: "
        'JSON Value: "NaN" Type: String is not of expected type: float'
    )


def encode(outputs, fmt):
    return codec.encode_predict_response(outputs, fmt).decode()


INT_2x3x2 = ("DT_INT32", np.int32([1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]).reshape(2, 3, 2))
STR_BYTES = ("DT_STRING", np.array([[b"hello", b"world"], [b"tf", b"serving"]], dtype=object))


@pytest.mark.parametrize(
    "case, outputs, fmt, expected",
    [
        (
            "C12 row",
            {"int_tensor": INT_2x3x2},
            codec.ROW,
            {"predictions": [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]]},
        ),
        (
            "C12 columnar",
            {"int_tensor": INT_2x3x2},
            codec.COLUMNAR,
            {"outputs": [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]]},
        ),
        (
            "C13 row",
            {"int_tensor": ("DT_INT32", np.int32([1, 2, 3, 4, 5]))},
            codec.ROW,
            {"predictions": [1, 2, 3, 4, 5]},
        ),
        (
            "C13 columnar",
            {"int_tensor": ("DT_INT32", np.int32([1, 2, 3, 4, 5]))},
            codec.COLUMNAR,
            {"outputs": [1, 2, 3, 4, 5]},
        ),
        (
            "C14",
            {"str_tensor_bytes": STR_BYTES},
            codec.ROW,
            {
                "predictions": [
                    [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}],
                    [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}],
                ]
            },
        ),
        ("C19 zero batch", {"x": ("DT_INT32", np.zeros([0, 2], np.int32))}, codec.ROW, {"predictions": []}),
        (
            "C19 zero batch, two outputs",
            {
                "s": ("DT_STRING", np.empty([0, 1, 2], dtype=object)),
                "f": ("DT_FLOAT", np.zeros([0, 3, 4], np.float32)),
            },
            codec.ROW,
            {"predictions": []},
        ),
        ("int64 unquoted", {"x": ("DT_INT64", np.int64([2**62]))}, codec.COLUMNAR, {"outputs": [2**62]}),
        ("bool", {"x": ("DT_BOOL", np.array([True, False]))}, codec.ROW, {"predictions": [True, False]}),
        (
            "scalar columnar",
            {"x": ("DT_FLOAT", np.float32(3.0).reshape(()))},
            codec.COLUMNAR,
            {"outputs": 3.0},
        ),
    ],
)
def test_encodes_like_json_tensor_test(case, outputs, fmt, expected):
    assert json.loads(encode(outputs, fmt)) == expected


def test_c15_float_text_uses_g_then_round_trip_precision_then_dot_zero():
    text = encode(
        {"x": ("DT_FLOAT", np.float32([[9000000, 999999, 0.5], [0.0003, 0.00003, 555557.5]]))}, codec.ROW
    )
    assert "[[9e+06, 999999.0, 0.5], [0.0003, 3e-05, 555557.5]]" in text


@pytest.mark.parametrize(
    "value, single, text",
    [
        (3.0, True, "3.0"),
        (42.0, False, "42.0"),
        (0.1, True, "0.1"),  # float32 0.1 round-trips through %g
        (0.1, False, "0.1"),
        (1 / 3, False, "0.33333333333333331"),
        (float(np.float32(1 / 3)), True, "0.333333343"),
        (-0.0, True, "-0.0"),
        (float("nan"), True, "NaN"),
        (float("-inf"), False, "-Infinity"),
    ],
)
def test_format_float(value, single, text):
    assert format_float(value, single=single) == text


def test_c16_non_finite_tokens_are_bare():
    text = encode({"x": ("DT_FLOAT", np.float32([[np.nan, np.inf], [3, -np.inf]]))}, codec.ROW)
    assert "[[NaN, Infinity], [3.0, -Infinity]]" in text
    parsed = json.loads(text)["predictions"]  # Python's json reads the tokens
    assert math.isnan(parsed[0][0]) and parsed[1] == [3.0, -math.inf]


def test_c17_five_named_outputs_row_and_columnar():
    outputs = {
        "double_scalar_tensor": ("DT_DOUBLE", np.float64([8, 9])),
        "float_tensor": ("DT_FLOAT", np.float32([[1], [2]])),
        "int_tensor": INT_2x3x2,
        "str_tensor": ("DT_STRING", np.array([[b"foo", b"bar"], [b"baz", b"bat"]], dtype=object)),
        "str_tensor_bytes": (
            "DT_STRING",
            np.array([[b"hello", b"world"], [b"tf", b"serving"]], dtype=object),
        ),
    }
    row = json.loads(encode(outputs, codec.ROW))
    assert row == {
        "predictions": [
            {
                "double_scalar_tensor": 8.0,
                "float_tensor": [1.0],
                "int_tensor": [[1, 2], [3, 4], [5, 6]],
                "str_tensor": ["foo", "bar"],
                "str_tensor_bytes": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}],
            },
            {
                "double_scalar_tensor": 9.0,
                "float_tensor": [2.0],
                "int_tensor": [[7, 8], [9, 0], [1, 2]],
                "str_tensor": ["baz", "bat"],
                "str_tensor_bytes": [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}],
            },
        ]
    }
    columnar = json.loads(encode(outputs, codec.COLUMNAR))
    assert columnar == {
        "outputs": {
            "double_scalar_tensor": [8.0, 9.0],
            "float_tensor": [[1.0], [2.0]],
            "int_tensor": [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]],
            "str_tensor": [["foo", "bar"], ["baz", "bat"]],
            "str_tensor_bytes": [
                [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}],
                [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}],
            ],
        }
    }


@pytest.mark.parametrize(
    "case, outputs, fmt, substring",
    [
        (
            "C18",
            {
                "a": ("DT_INT32", np.zeros([2, 3], np.int32)),
                "b": ("DT_STRING", np.full([1, 3], b"x", dtype=object)),
            },
            codec.ROW,
            "inconsistent batch size",
        ),
        ("C20 empty map", {}, codec.ROW, "empty tensor map"),
        (
            "C20 complex64",
            {"c": ("DT_COMPLEX64", np.zeros([1], np.complex64))},
            codec.ROW,
            "tensor type: complex64",
        ),
        (
            "C20 no shape",
            {"x": ("DT_INT32", np.int32(1).reshape(()))},
            codec.ROW,
            "has no shape information ",
        ),
    ],
)
def test_encode_errors(case, outputs, fmt, substring):
    with pytest.raises(ServingError) as raised:
        codec.encode_predict_response(outputs, fmt)
    assert raised.value.code == "INVALID_ARGUMENT" and substring in raised.value.message


def test_c23_error_body():
    body = error_body('Bad key: "key"')
    assert json.loads(body) == {"error": 'Bad key: "key"'}


@pytest.mark.parametrize(
    "body, message",
    [
        (b"instances = [1, 2]", "JSON Parse error: Invalid value. at offset: 0"),
        (b"   ", "JSON Parse error: The document is empty. at offset: 3"),
        (b'{"a": 1', "JSON Parse error: Missing a comma or '}' after an object member. at offset: 7"),
        (b"[1 2]", "JSON Parse error: Missing a comma or ']' after an array element. at offset: 3"),
        (b"[1, 2]", "JSON Value: [\n    1,\n    2\n] Is not object"),
    ],
)
def test_json_parse_errors_use_rapidjson_wording(body, message):
    from tfrs_mm.serving.json_text import ensure_object

    with pytest.raises(ServingError) as raised:
        ensure_object(parse_request(body))
    assert raised.value.message == message


def test_parse_accepts_rapidjsons_inf_spelling_outside_strings():
    document = parse_request(b'{"x": [Inf, -Inf, Infinity], "s": "Inf \\" Inf", "t": "a"}')
    assert document == {"x": [math.inf, -math.inf, math.inf], "s": 'Inf " Inf', "t": "a"}


def test_parse_accepts_nan_infinity_and_ignores_trailing_bytes():
    document = parse_request(b'{"x": [NaN, Infinity, -Infinity]} trailing garbage')
    assert math.isnan(document["x"][0]) and document["x"][1:] == [math.inf, -math.inf]


@pytest.mark.parametrize(
    "code, status",
    [
        ("OK", 200),
        ("CANCELLED", 499),
        ("UNKNOWN", 500),
        ("INTERNAL", 500),
        ("DATA_LOSS", 500),
        ("INVALID_ARGUMENT", 400),
        ("FAILED_PRECONDITION", 400),
        ("OUT_OF_RANGE", 400),
        ("DEADLINE_EXCEEDED", 504),
        ("NOT_FOUND", 404),
        ("ALREADY_EXISTS", 409),
        ("ABORTED", 409),
        ("PERMISSION_DENIED", 403),
        ("RESOURCE_EXHAUSTED", 429),
        ("UNIMPLEMENTED", 501),
        ("UNAVAILABLE", 503),
        ("UNAUTHENTICATED", 401),
    ],
)
def test_canonical_code_to_http_status(code, status):
    assert http_status(code) == status


def test_tf_op_errors_keep_their_canonical_code():
    class FakeOpError(Exception):  # the attributes tf.errors.OpError carries
        error_code, message = 5, "Op type not registered 'Scann>ScannSearchBatched'"

    error = from_exception(FakeOpError())
    assert (error.code, error.http_status) == ("NOT_FOUND", 404)
    assert error.message.startswith("Op type not registered")

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptgen.core.errors import PromptgenError, SpecError
from promptgen.core.spec import Arg, Piece, Spec, expect_options, parse_spec


@pytest.mark.parametrize(
    "text, name, args, weight",
    [
        ("mnist", "mnist", [], None),
        ("stylegan2:path=ffhq.pkl,truncation=0.7", "stylegan2", [("path", "=", "ffhq.pkl"), ("truncation", "=", "0.7")], None),
        ("classifier:digit=3", "classifier", [("digit", "=", "3")], None),
        ("classifier:digit!=1", "classifier", [("digit", "!=", "1")], None),
        ('clip:"a smiling face"@600', "clip", [(None, "=", "a smiling face")], 600.0),
        ("clip:a smiling face@600", "clip", [(None, "=", "a smiling face")], 600.0),  # what the shell passes on
        ("debias:gender,age", "debias", [(None, "=", "gender"), (None, "=", "age")], None),
        ("classifier:digit=3@2.5", "classifier", [("digit", "=", "3")], 2.5),
        ("classifier:digit=3@1e2", "classifier", [("digit", "=", "3")], 100.0),
        ('clip:"a, b @ c=d"', "clip", [(None, "=", "a, b @ c=d")], None),
        (" classifier : digit = 3 ", "classifier", [("digit", "=", "3")], None),
        ("prompt:runs/a:b", "prompt", [(None, "=", "runs/a:b")], None),
        ("x:k='it\\'s'", "x", [("k", "=", "it's")], None),
    ],
)
def test_examples_parse(text, name, args, weight):
    s = parse_spec(text)
    assert s.name == name
    assert [(a.key, a.op, a.value) for a in s.args] == args
    assert s.weight == weight


@pytest.mark.parametrize(
    "text, where, words",
    [
        ("", 1, "expected a name"),
        ("classifier:", 12, "expected an argument"),
        ("classifier:digit=", 18, "expected a value after 'digit='"),
        ("c:a,,b", 5, "empty argument"),
        ("classifier:digit=3@-1", 20, "negative"),
        ("classifier:digit=3@heavy", 20, "not a number"),
        ("classifier:digit=3@", 20, "expected a weight"),
        ("classifier:digit=3@nan", 20, "finite"),
        ('clip:"smiling', 6, "never closed"),
        ("clip:a b=3", 6, "not a valid option name"),
        ("cl assifier", 3, "cannot appear in a name"),
        ("mnist,x", 6, "expected ':'"),
    ],
)
def test_malformed_specs_say_where_they_broke(text, where, words):
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    msg = str(info.value)
    assert f"at character {where}:" in msg
    assert words in msg
    assert "\n" not in msg


names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,8}", fullmatch=True)
keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,6}", fullmatch=True)
texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@st.composite
def specs(draw):
    args = []
    for _ in range(draw(st.integers(0, 4))):
        quoted = draw(st.booleans())
        text = draw(texts)
        if not quoted:
            text = "".join(c for c in text if c not in ",@=\"'!\\").strip()
            if not text:
                text = "v"
        key = draw(st.one_of(st.none(), keys))
        op = draw(st.sampled_from(["=", "!="])) if key else "="
        args.append(Arg((Piece(text, quoted),), key, op))
    weight = draw(st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False), st.integers(0, 10**6).map(float)))
    return Spec(draw(names), tuple(args), weight)


@settings(max_examples=300, deadline=None)
@given(specs())
def test_format_then_parse_round_trips(spec):
    again = parse_spec(spec.format())
    assert again == spec
    assert again.format() == spec.format()


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40))
def test_any_text_parses_or_gets_a_one_line_spec_error(text):
    try:
        s = parse_spec(text)
    except SpecError as exc:
        assert "\n" not in str(exc) and str(exc)
    else:
        assert parse_spec(s.format()) == s


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab:=,@!\"'0.-e ", max_size=25))
def test_punctuation_heavy_text_never_crashes(text):
    try:
        parse_spec(text)
    except SpecError:
        pass


def test_expect_options_names_the_unknown_option():
    with pytest.raises(SpecError, match="unknown option 'truncaton'; did you mean 'truncation'"):
        expect_options(parse_spec("sg:truncaton=0.7"), {"truncation": "ψ", "path": "file"})
    with pytest.raises(SpecError, match="unexpected value 'x'"):
        expect_options(parse_spec("mnist:x"), {})
    with pytest.raises(SpecError, match="given twice"):
        expect_options(parse_spec("sg:path=a,path=b"), {"path": "file"})
    assert expect_options(parse_spec("sg:path=a"), {"path": "file"}) == {"path": "a"}


def test_spec_errors_are_user_errors():
    assert issubclass(SpecError, PromptgenError)

"""The query parser (runstore/query/lalr.py over the tables `python -m
runstore.query.gen_parser` writes from lark's analysis of grammar.lark) is lark's
parser for the grammar: the same trees and the same errors, with the same
positions and expected tokens, as lark itself builds from grammar.lark; and the
tables are regenerated whenever the grammar changes. A fresh process's query
imports neither lark nor `regex`."""

from __future__ import annotations

import re
import subprocess
import sys

from hypothesis import given, settings, strategies as st
from lark import Lark
from lark.exceptions import UnexpectedInput

from runstore.query import gen_parser, lalr

REFERENCE = Lark(gen_parser.GRAMMAR.read_text(encoding="utf-8"), **gen_parser.OPTIONS)
GENERATED = lalr

QUERIES = [
    "run.hparams.lr < 0.01",
    "run.hparams.lr < 0.01 and run.experiment == 'baseline'",
    "seq.name == 'loss' and seq.last < 1",
    "not run.archived or run.tags.contains('x')",
    "run.hparams['in'] in [1, 2, 3.5e-3,]",
    "run.a is not None and run.b is None",
    "run.x not in (1,) and run.y in ()",
    "-run.a * 2 + +3 % 4 - 5 / 6 >= 7 <= 8 != 9 > 1",
    'run.name == "a \\"quoted\\" name" or run.name == \'it\\\'s\'',
    "(run.a or run.b) and (run.c)",
    "seq.context.subset == 'train' and metric.last_step > 10",
    "run.f(1, run.g(2), 'x',)",
    "True and False or None",
    "run.a.b.c[0]['k'][run.i]",
    ".5 < run.a < 1. and 1e3 > run.b",
    "run.a ==",
    "run.a = 1",
    "and run.a",
    "run.a and",
    "run.x $ 3",
    "'unterminated",
    "run.a[",
    "((run.a)",
    "",
    "   ",
    "run.a\n and\n run.b <",
]


def shape(tree):
    """A parse tree as plain data (the two parsers have their own Tree/Token classes)."""
    if tree is None:
        return None
    if hasattr(tree, "data"):
        return (str(tree.data), [shape(c) for c in tree.children])
    return (tree.type, str(tree), tree.line, tree.column)


def outcome(parser, text: str):
    try:
        return ("tree", shape(parser.parse(text)))
    except Exception as err:  # both parsers' UnexpectedInput family
        assert isinstance(err, (UnexpectedInput, lalr.UnexpectedInput)), repr(err)
        token = getattr(err, "token", None)
        return ("error", type(err).__name__, getattr(err, "line", None), getattr(err, "column", None),
                None if token is None else (token.type, str(token)),
                sorted(getattr(err, "expected", None) or getattr(err, "allowed", None) or []))


def test_the_generated_parser_was_made_from_this_grammar():
    recorded = gen_parser.generated_digest(gen_parser.TARGET.read_text(encoding="utf-8"))
    assert recorded == gen_parser.grammar_digest(), (
        "grammar.lark changed since _lalr_tables.py was generated: run `python -m runstore.query.gen_parser`")


def test_same_trees_and_errors_as_lark_for_the_corpus():
    for text in QUERIES:
        assert outcome(GENERATED, text) == outcome(REFERENCE, text), text
    assert sum(outcome(GENERATED, t)[0] == "error" for t in QUERIES) >= 8  # the corpus has errors in it


WORDS = ["run", "seq", "metric", ".", "hparams", "name", "lr", "[", "]", "(", ")", ",", "0", "1.5", "2e-3",
         ".5", "'s'", '"t"', "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "and", "or", "not",
         "in", "is", "None", "True", "False", "contains", "@", "'", " ", "\n"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=14), st.lists(st.booleans(), max_size=14))
def test_same_trees_and_errors_as_lark_for_random_token_strings(words, spaces):
    text = "".join(w + (" " if i < len(spaces) and spaces[i] else "") for i, w in enumerate(words))
    assert outcome(GENERATED, text) == outcome(REFERENCE, text)


PATTERN = re.compile(lalr._t.PATTERN)
ALPHABET = st.sampled_from(list("aAzZ_09.'\"\\ \t\n\x0ceE+-=<>!,()[]%/*@$") + ["\u0663", "\uff11", "\u00e9"])
PIECES = st.sampled_from(WORDS + ["andx", "in2", "_", "1.", "1.e5", "1e", "3E+", ".e1", "'a\\'b'", "'a\\\n'",
                                  "\"x\\\\\"", "!", "=", "\u0663.5", "True_", "None1"])


def regex_scan(text: str, pos: int):
    m = PATTERN.match(text, pos)
    return None if m is None else (m.lastgroup, m.end())


def test_the_hand_lexer_knows_every_terminal_of_the_pattern():
    assert lalr.TERMINALS == set(PATTERN.groupindex)


@settings(max_examples=600, deadline=None)
@given(st.one_of(st.text(ALPHABET, max_size=24), st.lists(PIECES, max_size=10).map("".join)))
def test_the_hand_lexer_scans_as_the_generated_pattern(text):
    for pos in range(len(text)):
        assert lalr.scan(text, pos) == regex_scan(text, pos), (text, pos)


def test_a_keyword_glued_to_a_name_is_a_name_as_in_python():
    import pytest

    from runstore.errors import QuerySyntaxError
    from runstore.query.parser import parse

    for text in ("run.a == 1 andrun.b", "'x' inrun.tags", "run.a or1.5"):
        with pytest.raises(QuerySyntaxError):
            parse(text)
    for text in ("run.a == 1 and(run.b)", "run.a<1and run.b", "run.x in[1, 2]", "not(run.a)"):
        parse(text)  # a keyword next to punctuation or a number is still a keyword


NOT_IMPORTED = ("lark", "regex", "difflib", "typing_extensions", "json", "dataclasses", "logging")


def test_a_fresh_process_queries_without_importing_lark_or_regex(tmp_path):
    # nor the modules only an error message or a display needs (each ~0.5-2 ms of a
    # fresh process's first query)
    code = (
        "import sys; from runstore import Repo, Run\n"
        f"repo = Repo({str(tmp_path / 'r')!r}, create=True)\n"
        "with Run(repo=repo) as run:\n    run['hparams'] = {'lr': 0.001}; run.track(1.0, name='loss')\n"
        "assert len(repo.query_runs('run.hparams.lr < 0.01')) == 1\n"
        "assert len(repo.query_sequences(\"seq.name == 'loss'\")) == 1\n"
        "print(sorted(m for m in NOT_IMPORTED if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", f"NOT_IMPORTED = {NOT_IMPORTED!r}\n" + code], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_node_classes_are_value_types():
    """parser.node_class: fields by name and position, defaults, equality only within a
    class (as frozen dataclasses), hashable, picklable, copyable, clear errors."""
    import copy
    import pickle

    import pytest

    from runstore.query.parser import Compare, Const, Ref

    a = Const(1)
    assert a == Const(1, (1, 1)) == Const(value=1) and a.pos == (1, 1) and a.value == 1
    assert a != (1, (1, 1)) and Const(1) != Ref(1, (1, 1)) and hash(a) == hash(Const(1))
    assert Const(1) != Const(2) and len({Const(1), Const(1), Const(2)}) == 2
    r = Ref("run", ("hparams", "lr"), pos=(2, 3))
    assert (r.root, r.path, r.pos) == ("run", ("hparams", "lr"), (2, 3)) and tuple(r) == ("run", ("hparams", "lr"), (2, 3))
    assert repr(r) == "Ref(root='run', path=('hparams', 'lr'), pos=(2, 3))"
    assert pickle.loads(pickle.dumps(r)) == r and copy.deepcopy(r) == r and copy.copy(r) == r
    assert r._replace(pos=(1, 1)) == Ref("run", ("hparams", "lr"))
    with pytest.raises(TypeError, match="missing field 'ops'"):
        Compare(())
    with pytest.raises(TypeError, match="no field 'nope'"):
        Const(1, nope=2)
    with pytest.raises(TypeError, match="twice"):
        Const(1, value=2)
    with pytest.raises(TypeError, match="takes 2 fields"):
        Const(1, 2, 3)
    with pytest.raises(AttributeError):
        a.value = 2

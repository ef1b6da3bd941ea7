"""docs/troubleshooting.md (and docs/deployment.md) say only what is true of this code.

Static checks, no server (tests/e2e/test_troubleshooting_commands.py runs the
commands against live servers):

- every UPPER_SNAKE word is a declared setting, or one of a short list of
  other names (shell variables of the examples, audit event types, ...), each
  of which is itself checked against the source;
- every ``authgate ...`` command line parses with the real argument parser;
- every message quoted in a ``<!-- messages -->`` block, and every string in a
  ``<!-- response: NAME -->`` JSON body, is produced by the code: it is matched
  against the string literals of authgate/ and plugins/, with format
  placeholders (``%s``, ``{value}``) standing for values or nested messages;
- a ``<!-- source: PATH -->`` code block appears verbatim in PATH;
- defaults the guide states agree with the declarations;
- relative links and #anchors resolve.
"""

from __future__ import annotations

import ast
import functools
import json
import re
import shlex
from pathlib import Path

import pytest

from authgate import docs
from authgate.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
TROUBLESHOOTING = ROOT / "docs" / "troubleshooting.md"
DEPLOYMENT = ROOT / "docs" / "deployment.md"
GUIDES = [TROUBLESHOOTING, DEPLOYMENT, ROOT / "docs" / "index.md"]
SOURCE_DIRS = [ROOT / "authgate", ROOT / "plugins"]

# UPPER_SNAKE words that are not AuthGate settings, by what they are.
SHELL_VARIABLES = {"CLIENT_ID", "CLIENT_SECRET", "DEVICE_CODE", "USER_ID", "ADMIN_PASSWORD"}
DEVICE_LOGIN_ENVIRONMENT = {"CLIENT_ID", "SERVER_URL"}  # read by `authgate device-login`
LOGGING_ENVIRONMENT = {"GIN_MODE", "LOG_LEVEL"}  # read by authgate/logsetup.py
THIRD_PARTY_ENVIRONMENT = {"PROMETHEUS_MULTIPROC_DIR"}  # prometheus_client's own switch
AUDIT_EVENT_TYPES = {"RATE_LIMIT_EXCEEDED", "USER_DISABLED", "AUTHENTICATION_FAILURE",
                     "SUSPICIOUS_ACTIVITY", "USER_PASSWORD_RESET", "LOGOUT"}
GREP_PATTERNS = {"RATE_LIMIT"}  # `grep RATE_LIMIT .env`: part of several settings' names
NOT_SETTINGS = (SHELL_VARIABLES | DEVICE_LOGIN_ENVIRONMENT | LOGGING_ENVIRONMENT
                | THIRD_PARTY_ENVIRONMENT | AUDIT_EVENT_TYPES | GREP_PATTERNS)

# Values that come from outside AuthGate (an external API's own message) and may
# fill a placeholder although they contain spaces.
EXTERNAL_VALUES = {"No such file or directory"}  # the operating system's strerror

UPPER_SNAKE = re.compile(r"(?<![\w.$])[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+(?![\w.])")
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)\n(?P<body>.*?)^(?P=indent)```",
                   re.M | re.S)
MARKER = re.compile(r"<!-- (?P<kind>check|response|messages|source)(?:: (?P<name>[^ ]+))? -->"
                    r"\s*\n(?P<indent> *)```(?P<lang>[\w-]*)\n(?P<body>.*?)^(?P=indent)```",
                    re.M | re.S)
LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z]+ +\[[\w.]+(?:\]\[[\w-]+)?\] ")


def text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def dedent(body: str, indent: str) -> str:
    return "\n".join(line[len(indent):] if line.startswith(indent) else line
                     for line in body.splitlines())


def marked(path: Path, kind: str) -> list[tuple[str | None, str]]:
    return [(m["name"], dedent(m["body"], m["indent"]))
            for m in MARKER.finditer(text_of(path)) if m["kind"] == kind]


# ---------------------------------------------------------------------------
# Setting names
# ---------------------------------------------------------------------------


@functools.cache
def declared_env_names() -> frozenset[str]:
    return frozenset(setting.env for setting in docs.bundled_spec())


@functools.cache
def source_text() -> str:
    return "\n".join(path.read_text(encoding="utf-8")
                     for folder in SOURCE_DIRS for path in sorted(folder.rglob("*.py")))


@pytest.mark.parametrize("guide", [TROUBLESHOOTING, DEPLOYMENT], ids=lambda p: p.name)
def test_every_setting_name_is_declared(guide):
    names = set(UPPER_SNAKE.findall(text_of(guide)))
    unknown = sorted(names - declared_env_names() - NOT_SETTINGS)
    assert not unknown, (f"{guide.name} names settings that no declaration has: {unknown} "
                         "(declare them, fix the name, or add a real non-setting to the "
                         "lists at the top of this test)")


def test_the_guide_uses_the_seed_settings():
    names = set(UPPER_SNAKE.findall(text_of(TROUBLESHOOTING)))
    for name in ("DATABASE_DRIVER", "DATABASE_DSN", "JWT_SECRET", "JWT_SIGNING_ALGORITHM",
                 "JWT_PRIVATE_KEY_PATH", "JWT_KEY_ID", "SESSION_SECRET", "BASE_URL",
                 "ENABLE_RATE_LIMIT", "LOGIN_RATE_LIMIT", "DEVICE_CODE_RATE_LIMIT",
                 "TOKEN_RATE_LIMIT", "HTTP_API_TIMEOUT", "HTTP_API_AUTH_MODE",
                 "HTTP_API_AUTH_SECRET", "HTTP_API_MAX_RETRIES", "HTTP_API_RETRY_DELAY",
                 "HTTP_API_MAX_RETRY_DELAY", "REFRESH_TOKEN_EXPIRATION",
                 "ENABLE_REFRESH_TOKENS", "ENABLE_TOKEN_ROTATION", "DEVICE_CODE_EXPIRATION",
                 "POLLING_INTERVAL", "TRUSTED_PROXIES", "JWT_PREVIOUS_KEY_PATHS"):
        assert name in names, name
        assert name in declared_env_names(), name


def test_the_non_settings_are_what_the_lists_say():
    source = source_text()
    for name in AUDIT_EVENT_TYPES:
        assert f'"{name}"' in source, f"{name} is not an audit event type in the source"
    cli = (ROOT / "authgate" / "cli.py").read_text()
    for name in DEVICE_LOGIN_ENVIRONMENT:
        assert f'environ.get("{name}"' in cli, f"authgate device-login does not read {name}"
    logsetup = (ROOT / "authgate" / "logsetup.py").read_text()
    for name in LOGGING_ENVIRONMENT:
        assert f'"{name}"' in logsetup, f"authgate/logsetup.py does not read {name}"
    assert "PROMETHEUS_MULTIPROC_DIR" in (ROOT / "authgate" / "metrics.py").read_text()
    for pattern in GREP_PATTERNS:
        assert sum(pattern in name for name in declared_env_names()) >= 3, pattern
    assert not (NOT_SETTINGS - SHELL_VARIABLES - DEVICE_LOGIN_ENVIRONMENT
                - LOGGING_ENVIRONMENT) & declared_env_names()


# ---------------------------------------------------------------------------
# authgate commands
# ---------------------------------------------------------------------------

COMMAND_START = re.compile(
    r"(?:^|&&|;|\||\$\(|^\s*(?:sudo(?: -u \w+)? )?(?:\w+=\S+ )*)\s*"
    r"(?:(?:/[\w.-]+)+/|\.venv/bin/)?authgate(?= )(?P<rest>[^\n]*)", re.M)


def command_lines(text: str) -> list[str]:
    """``authgate ...`` invocations in code blocks and inline code spans."""
    pieces = [m["body"] for m in FENCE.finditer(text)]
    pieces += re.findall(r"`([^`\n]+)`", FENCE.sub("", text))
    found = []
    for piece in pieces:
        piece = piece.replace("\\\n", " ")
        for match in COMMAND_START.finditer(piece):
            rest = re.split(r"\s(?:\||&&|;|>|2>|#)\s?|\)$|\) ", match["rest"])[0]
            found.append("authgate" + rest.rstrip())
    return found


def _subcommands(parser) -> dict:
    for action in parser._actions:
        if action.choices and hasattr(action, "_name_parser_map"):
            return action._name_parser_map
    return {}


def command_path(argv: list[str]) -> bool:
    """Whether ``argv`` is exactly a (sub)command's name, such as ``db copy``."""
    parser = build_parser()
    for word in argv:
        commands = _subcommands(parser)
        if word not in commands:
            return False
        parser = commands[word]
    return True


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_every_authgate_command_parses(guide):
    commands = command_lines(text_of(guide))
    if guide != GUIDES[-1]:
        assert commands, f"no authgate command found in {guide.name}"
    parser = build_parser()
    for line in commands:
        argv = shlex.split(line.replace("[", "").replace("]", ""))[1:]  # usage brackets
        if argv in (["-v"], ["--version"]):
            continue
        if argv and all(not a.startswith("-") for a in argv) and command_path(argv):
            continue  # a command named in prose (`authgate create-user`)
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{guide.name}: `{line}` is not a valid authgate command")
        assert args.command, line


def test_the_commands_the_guide_needs_are_found():
    commands = " ".join(command_lines(text_of(TROUBLESHOOTING)))
    for expected in ("authgate server", "authgate device-login", "authgate keys generate",
                     "authgate db copy", "authgate create-client", "authgate -v"):
        assert expected in commands, expected
    commands = " ".join(command_lines(text_of(DEPLOYMENT)))
    for expected in ("authgate server -c", "authgate migrate", "authgate cleanup"):
        assert expected in commands, expected


# ---------------------------------------------------------------------------
# Quoted messages: matched against the string literals of the source
# ---------------------------------------------------------------------------

PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(?:\d+|\*)?(?:\.\d+)?[sdrfgixXe]")
BRACES = re.compile(r"\{[^{}]*\}")
HOLE = None  # marks a placeholder in a template


def _plain_pieces(text: str) -> list:
    pieces: list = []
    pos = 0
    for match in re.finditer(f"{PRINTF.pattern}|{BRACES.pattern}", text):
        pieces.append(text[pos:match.start()])
        pieces.append(HOLE)
        pos = match.end()
    pieces.append(text[pos:])
    return pieces


def _node_pieces(node: ast.AST) -> list | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return _plain_pieces(node.value.replace("%%", "%"))
    if isinstance(node, ast.JoinedStr):
        pieces: list = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                pieces.append(str(value.value))
            else:
                pieces.append(HOLE)
        return pieces
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _node_pieces(node.left), _node_pieces(node.right)
        if left is None and right is None:
            return None
        return (left or [HOLE]) + (right or [HOLE])
    return None


def _normalise(pieces: list) -> tuple:
    out: list = []
    for piece in pieces:
        if piece is HOLE:
            out.append(HOLE)  # adjacent holes stay apart: each may be a message
        elif piece:
            if out and out[-1] is not HOLE:
                out[-1] += piece
            else:
                out.append(piece)
    return tuple(out)


@functools.cache
def templates() -> tuple[tuple, ...]:
    """Every string literal, f-string and ``+`` concatenation of the source, as
    pieces of literal text and placeholders."""
    found: set[tuple] = set()
    for folder in SOURCE_DIRS:
        for path in folder.rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                pieces = _node_pieces(node)
                if pieces is None:
                    continue
                template = _normalise(pieces)
                literal = "".join(p for p in template if p is not HOLE)
                if literal.strip():
                    found.add(template)
    return tuple(found)


def _candidates(text: str) -> list[tuple]:
    result = []
    for template in templates():
        literals = [p for p in template if p is not HOLE]
        if template[0] is not HOLE and not text.startswith(template[0]):
            continue
        if template[-1] is not HOLE and not text.endswith(template[-1]):
            continue
        if all(piece in text for piece in literals):
            result.append(template)
    return result


def _value_ok(value: str, depth: int) -> bool:
    if " " not in value.strip():
        return True  # a value (an id, a number, a URL, a key type), maybe padded
    if value.strip() in EXTERNAL_VALUES:
        return True
    return depth < 6 and (explained(value, depth + 1) or explained(value.strip(), depth + 1))


def _fits(template: tuple, text: str, depth: int) -> bool:
    def walk(i: int, pos: int) -> bool:
        if i == len(template):
            return pos == len(text)
        piece = template[i]
        if piece is not HOLE:
            return text.startswith(piece, pos) and walk(i + 1, pos + len(piece))
        if i + 1 == len(template):
            return _value_ok(text[pos:], depth)
        following = template[i + 1]
        if following is HOLE:
            return any(_value_ok(text[pos:end], depth) and walk(i + 1, end)
                       for end in range(pos, len(text) + 1))
        start = pos
        while True:
            found = text.find(following, start)
            if found < 0:
                return False
            if _value_ok(text[pos:found], depth) and walk(i + 1, found):
                return True
            start = found + 1

    return walk(0, 0)


@functools.cache
def explained(text: str, depth: int = 0) -> bool:
    """Can the code produce ``text``?  Placeholders stand for values (no spaces) or for
    text that is itself explained (a nested message)."""
    for template in _candidates(text):
        if depth == 0 and template == (HOLE,):
            continue
        if _fits(template, text, depth):
            return True
    return False


def quoted_messages(guide: Path) -> list[str]:
    lines = []
    for _name, body in marked(guide, "messages"):
        for line in body.splitlines():
            if line.strip():
                lines.append(LOG_PREFIX.sub("", line.strip()))
    return lines


def test_the_guide_quotes_messages():
    messages = quoted_messages(TROUBLESHOOTING)
    assert len(messages) >= 10
    for expected in ("Seeded OAuth client with ID: ",
                     "Waiting for authorization... (authorization_pending)",
                     "Username conflict with existing user. Please contact administrator.",
                     "NewLocalTokenProvider: RS256 requires *rsa.PrivateKey, got "
                     "*ecdsa.PrivateKey", "no supported private key found in PEM file",
                     "Authentication failed: connection refused by",
                     "Authentication failed: timeout waiting for authentication response"):
        assert any(expected in message for message in messages), expected


@pytest.mark.parametrize("guide", [TROUBLESHOOTING, DEPLOYMENT], ids=lambda p: p.name)
def test_every_quoted_message_comes_from_the_code(guide):
    missing = [message for message in quoted_messages(guide) if not explained(message)]
    assert not missing, (f"{guide.name} quotes messages the code cannot produce "
                         f"(grep authgate/ and plugins/): {missing}")


def test_the_matcher_rejects_invented_messages():
    assert explained("Seeded OAuth client with ID: 116a8425-649e-46be-803d-1bca3ccf18eb")
    assert explained("Username conflict with existing user. Please contact administrator.")
    assert not explained("Seeded OAuth client with identifier: 116a8425")
    assert not explained("Username conflict with an existing user, contact the admin.")
    assert not explained("NewLocalTokenProvider: RS256 requires a bigger key please")
    assert not explained("Waiting for authorization... (still pending)")


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_every_quoted_response_comes_from_the_code():
    responses = marked(TROUBLESHOOTING, "response")
    assert {name for name, _ in responses} >= {"client-not-found", "signature-failed",
                                               "rate-limited", "jwks-empty"}
    for name, body in responses:
        for string in _strings(json.loads(body)):
            assert explained(string), f"response {name}: {string!r} is not in the code"


def test_source_quotes_are_verbatim():
    quotes = marked(TROUBLESHOOTING, "source")
    assert quotes
    for path, body in quotes:
        source = (ROOT / path).read_text(encoding="utf-8")
        flat = " ".join(source.split())
        assert " ".join(body.split()) in flat, f"the quote of {path} no longer matches it"


# ---------------------------------------------------------------------------
# Stated defaults
# ---------------------------------------------------------------------------

DEFAULT_ROW = re.compile(r"^ *\| `([A-Z][A-Z0-9_]+)` \| `?([^|`]+?)`? \|", re.M)
# NAME (or `NAME`, NAME=value), then within 60 characters and before any other
# setting name: "default `V`", or "default V" where V has a digit.
DEFAULT_INLINE = re.compile(
    r"`?([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)`?(?:=\S*)?"
    r"(?:(?![A-Z][A-Z0-9]*_[A-Z0-9])[^\n]){0,60}?\bdefault:? "
    r"(?:`([^`]+)`|([\w.:/-]*\d[\w.:/-]*?))(?=[\s,;)]|$)")


def stated_defaults(text: str) -> list[tuple[str, str]]:
    found = []
    for match in DEFAULT_ROW.finditer(text):
        if re.fullmatch(r"[\w.:/-]+", match[2].strip()):
            found.append((match[1], match[2].strip()))
    for line in text.splitlines():
        found += [(name, quoted or bare) for name, quoted, bare in DEFAULT_INLINE.findall(line)]
    return found


@pytest.mark.parametrize("guide", [TROUBLESHOOTING, DEPLOYMENT], ids=lambda p: p.name)
def test_stated_defaults_are_the_declared_ones(guide):
    spec = {setting.env: setting for setting in docs.bundled_spec()}
    checked = 0
    for env, value in stated_defaults(text_of(guide)):
        if env not in spec:
            continue
        shown = spec[env].shown_default()
        assert value == shown, f"{guide.name}: {env} default is {shown!r}, not {value!r}"
        checked += 1
    if guide == TROUBLESHOOTING:
        assert checked >= 10


# ---------------------------------------------------------------------------
# Links
# ---------------------------------------------------------------------------


def slug(heading: str) -> str:
    heading = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", text_of(path))
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_links_resolve(guide):
    text = FENCE.sub("", text_of(guide))
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path_part, _, anchor = target.partition("#")
        path = (guide.parent / path_part).resolve() if path_part else guide
        assert path.exists(), f"{guide.name}: broken link {target}"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path), f"{guide.name}: no #{anchor} in {path.name}"


def test_index_lists_every_page():
    index = text_of(ROOT / "docs" / "index.md")
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name != "index.md":
            assert f"]({page.name})" in index, f"docs/index.md does not list {page.name}"

"""Realistic secrets and code for the code index's tests, made afresh from a seed.

No secret-shaped literal is written in this repository: every value is generated, so the
index scanning its own tests finds nothing but what the tests create at run time.
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ALNUM = string.ascii_letters + string.digits
B32 = string.ascii_uppercase + "234567"


@dataclass(frozen=True)
class Sample:
    """A secret value, a line of code that holds it, and what the index must call it."""

    type: str  # our slug
    value: str  # what must never reach the index
    code: str  # one or more lines of Python holding it

    def pieces(self) -> list[str]:
        """What to look for in the index: the value, or each base64 run of a multi-line one."""
        if "\n" in self.value:
            return [run for run in _b64_runs(self.value) if len(run) >= 16]
        return [self.value]


def _b64_runs(value: str) -> list[str]:
    runs, current = [], []
    for char in value:
        if char in ALNUM + "+/=_":
            current.append(char)
        else:
            runs.append("".join(current))
            current = []
    runs.append("".join(current))
    return runs


def _pick(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def aws_access_key(rng: random.Random) -> Sample:
    value = "AKIA" + _pick(rng, B32, 16)
    return Sample("aws-access-key", value, f'AWS_ACCESS_KEY_ID = "{value}"')


def aws_secret_key(rng: random.Random) -> Sample:
    value = _pick(rng, ALNUM + "+/", 40)
    return Sample("aws-access-key", value, f'aws_secret_access_key = "{value}"')


def github_token(rng: random.Random) -> Sample:
    value = "ghp_" + _pick(rng, ALNUM, 36)
    return Sample("github-token", value, f'GITHUB_TOKEN = "{value}"')


def github_fine_grained(rng: random.Random) -> Sample:
    value = "github_pat_" + _pick(rng, ALNUM, 22) + "_" + _pick(rng, ALNUM, 59)
    return Sample("github-token", value, f'headers = {{"Authorization": "token {value}"}}')


def slack_token(rng: random.Random) -> Sample:
    value = f"xoxb-{_pick(rng, string.digits, 11)}-{_pick(rng, string.digits, 13)}-{_pick(rng, ALNUM, 24)}"
    return Sample("slack-token", value, f'slack = WebClient(token="{value}")')


def slack_webhook(rng: random.Random) -> Sample:
    path = f"T{_pick(rng, string.ascii_uppercase + string.digits, 8)}/B{_pick(rng, string.ascii_uppercase, 10)}"
    value = f"https://hooks.slack.com/services/{path}/{_pick(rng, ALNUM, 24)}"
    return Sample("slack-token", value, f'WEBHOOK = "{value}"')


def stripe_key(rng: random.Random) -> Sample:
    value = "sk_live_" + _pick(rng, ALNUM, 24)
    return Sample("stripe-key", value, f'stripe.api_key = "{value}"')


def jwt(rng: random.Random) -> Sample:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": _pick(rng, string.digits, 10), "name": "Ada", "iat": 1516239022}
    value = f"{header}.{_b64url(json.dumps(claims).encode())}.{_b64url(rng.randbytes(32))}"
    return Sample("jwt", value, f'session.headers["Authorization"] = "Bearer {value}"')


def basic_auth_url(rng: random.Random) -> Sample:
    value = _pick(rng, ALNUM, 18)
    return Sample("basic-auth-url", value, f'DATABASE_URL = "postgres://admin:{value}@db.internal:5432/app"')


def url_password_with_symbols(rng: random.Random) -> Sample:
    # detect-secrets' basic-auth pattern stops at "!" and "$": only our detector finds this.
    value = _pick(rng, ALNUM, 10) + "!$" + _pick(rng, ALNUM, 6)
    return Sample("basic-auth-url", value, f'broker = "amqp://worker:{value}@mq.internal:5672/"')


def password_assignment(rng: random.Random) -> Sample:
    value = _pick(rng, ALNUM, 16)
    return Sample("secret-keyword", value, f'password = "{value}"')


def high_entropy_string(rng: random.Random) -> Sample:
    value = _pick(rng, ALNUM + "+/", 44)
    return Sample("high-entropy-string", value, f'SIGNING_SEED = "{value}"')


def hex_entropy_string(rng: random.Random) -> Sample:
    value = _pick(rng, "0123456789abcdef", 40)
    return Sample("high-entropy-string", value, f'checksum_salt = "{value}"')


def nkey_seed(rng: random.Random) -> Sample:
    value = "SUA" + _pick(rng, B32, 55)
    return Sample("nkey-seed", value, f'NATS_SEED = "{value}"')


@cache
def private_keys() -> dict[str, str]:
    """PEM and OpenSSH private keys of the kinds found in repositories (made once: RSA is slow)."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    pem, fmt, none = serialization.Encoding.PEM, serialization.PrivateFormat, serialization.NoEncryption()
    return {
        "rsa": rsa_key.private_bytes(pem, fmt.TraditionalOpenSSL, none).decode(),
        "pkcs8": rsa_key.private_bytes(pem, fmt.PKCS8, none).decode(),
        "ec": ec_key.private_bytes(pem, fmt.TraditionalOpenSSL, none).decode(),
        "openssh": ed_key.private_bytes(pem, fmt.OpenSSH, none).decode(),
        # detect-secrets does not know this armor at all.
        "encrypted": rsa_key.private_bytes(pem, fmt.PKCS8, serialization.BestAvailableEncryption(b"pw")).decode(),
    }


def private_key_block(rng: random.Random) -> Sample:
    """A key as a triple-quoted string constant."""
    value = private_keys()[rng.choice(sorted(private_keys()))].strip()
    return Sample("private-key", value, f'PRIVATE_KEY = """\n{value}\n"""')


def private_key_escaped(rng: random.Random) -> Sample:
    """A key in one string with \\n escapes, as in JSON service-account files."""
    value = private_keys()[rng.choice(["pkcs8", "ec"])].strip().replace("\n", "\\n")
    return Sample("private-key", value, f'KEY = "{value}"')


def private_key_concatenated(rng: random.Random) -> Sample:
    """A key split over implicitly concatenated strings."""
    key = private_keys()[rng.choice(["rsa", "ec"])].strip()
    lines = key.split("\n")
    code = "KEY = (\n" + "".join(f'    "{line}\\n"\n' for line in lines) + ")"
    value = code[code.index("-----BEGIN") : code.rindex("-----") + 5]
    return Sample("private-key", value, code)


SAMPLERS: list[Callable[[random.Random], Sample]] = [
    aws_access_key,
    aws_secret_key,
    github_token,
    github_fine_grained,
    slack_token,
    slack_webhook,
    stripe_key,
    jwt,
    basic_auth_url,
    url_password_with_symbols,
    password_assignment,
    high_entropy_string,
    hex_entropy_string,
    nkey_seed,
    private_key_block,
    private_key_escaped,
    private_key_concatenated,
]

# Secrets recognisable by their shape alone, wherever they stand. The others (an AWS secret
# key, a password, a random string, a URL's password) are secrets because of their context:
# an assignment to a telling name, quotes, a URL around them.
SELF_EVIDENT: set[Callable[[random.Random], Sample]] = {
    aws_access_key,
    github_token,
    github_fine_grained,
    slack_token,
    slack_webhook,
    stripe_key,
    jwt,
    nkey_seed,
    private_key_block,
}


# Clean code that looks a little like secrets but is not: none of it may give a finding.
CLEAN_LINES = [
    "password = get_password()",
    'token = os.environ["API_TOKEN"]',
    "secret_key = settings.SECRET_KEY",
    'api_key = request.headers["X-Api-Key"]',
    'url = f"postgres://{user}:{password}@{host}:5432/{name}"',
    'dsn = "mysql://%(user)s:%(password)s@%(host)s/db" % params',
    'DOCS = "https://docs.python.org/3/library/ast.html#ast.parse"',
    'REQUEST_ID = "123e4567-e89b-12d3-a456-426614174000"',
    'LOCALHOST = "127.0.0.1"',
    'SUBNET = "10.0.0.0/8"',
    'VERSION = "1.2.3"',
    'ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"',
    'if password == "":',
    "    raise ValueError('password must not be empty')",
    'TEMPLATE = "${DB_PASSWORD}"',
    'log.info("connecting to %s", url)',
    "keys = sorted(mapping.keys(), key=len)",
    'secret_name = get_secret_name("prod/db")',
]

_NOUNS = ["device", "command", "event", "stream", "order", "report", "sensor", "batch", "client", "record"]
_VERBS = ["load", "save", "send", "parse", "build", "check", "apply", "fetch", "render", "update"]


def python_module(rng: random.Random, *, classes: int = 3, functions: int = 4) -> str:
    """A module shaped like application code: imports, constants, classes, functions."""
    out = [
        f'"""The {rng.choice(_NOUNS)} service: {rng.choice(_VERBS)} and {rng.choice(_VERBS)} things."""',
        "",
        "from __future__ import annotations",
        "",
        "import json",
        "import logging",
        "from collections.abc import Iterable",
        "from dataclasses import dataclass, field",
        "",
        "log = logging.getLogger(__name__)",
        f"MAX_{rng.choice(_NOUNS).upper()}S = {rng.randint(1, 1000)}",
        "",
    ]
    for _ in range(classes):
        noun = rng.choice(_NOUNS)
        name = noun.capitalize() + rng.choice(["Store", "Handler", "Manager", "Service"])
        out += [
            "",
            "@dataclass",
            f"class {name}:",
            f'    """Keeps {noun}s and answers questions about them."""',
            "",
            "    items: dict[str, int] = field(default_factory=dict)",
            "    limit: int = 10",
        ]
        for _ in range(rng.randint(2, 5)):
            verb = rng.choice(_VERBS)
            out += [
                "",
                f"    def {verb}_{noun}(self, key: str, value: int = 0, *extra: str, **options: object) -> int | None:",
                f'        """{verb.capitalize()} one {noun}; returns the new count, or None if it is full."""',
                "        if len(self.items) >= self.limit:",
                f'            log.warning("%s full: %d {noun}s", type(self).__name__, len(self.items))',
                "            return None",
                "        self.items[key] = self.items.get(key, 0) + value",
                f"        self._{rng.choice(_VERBS)}(key, options)",
                "        return self.items[key]",
            ]
    for _ in range(functions):
        verb, noun = rng.choice(_VERBS), rng.choice(_NOUNS)
        out += [
            "",
            "",
            f"def {verb}_{noun}s(rows: Iterable[dict[str, object]], *, strict: bool = False) -> list[str]:",
            f'    """{verb.capitalize()} {noun}s from rows; with `strict`, a bad row raises."""',
            "    out = []",
            "    for row in rows:",
            "        try:",
            "            out.append(json.dumps(row, sort_keys=True))",
            "        except (TypeError, ValueError):",
            "            if strict:",
            "                raise",
            '            log.debug("skipped a row")',
            "    return out",
        ]
    return "\n".join(out) + "\n"

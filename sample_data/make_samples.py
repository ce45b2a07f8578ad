"""Generate the synthetic sample inputs that batchllm's examples and tests use.

Running ``python sample_data/make_samples.py`` writes, next to this script:

* ``tickets.csv`` - 3,000 support tickets for "Ledgerly", a fictional invoicing and
  payments app (RFC 4180 CSV, UTF-8, header row, CRLF row endings).
* ``tickets_small.jsonl`` - the first 200 of those tickets as JSON Lines.
* ``reviews.parquet`` - 2,000 reviews of fictional consumer products.

Everything is invented: the text is assembled from the phrase banks in this file,
which were written for this project, and every company, person, amount and
identifier is made up. Only the standard library (``random`` with fixed seeds)
and pyarrow are used, so a rerun reproduces the CSV and JSONL byte for byte and
the Parquet file with identical contents.
"""

from __future__ import annotations

import csv
import json
import random
import re
import textwrap
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

OUT_DIR = Path(__file__).resolve().parent
TICKETS_CSV = OUT_DIR / "tickets.csv"
TICKETS_JSONL = OUT_DIR / "tickets_small.jsonl"
REVIEWS_PARQUET = OUT_DIR / "reviews.parquet"

TICKET_SEED = 20_260_101  # arbitrary but fixed: changing it reshuffles every ticket
REVIEW_SEED = 20_240_301
N_TICKETS = 3_000
N_CUSTOMERS = 800
N_JSONL = 200
N_REVIEWS = 2_000
MAX_BODY_CHARS = 2_500
TICKET_YEAR = 2026
FIRST_TICKET_NUMBER = 10_001

TICKET_COLUMNS = (
    "ticket_id",
    "created_at",
    "customer",
    "channel",
    "subject",
    "body",
    "product_area",
)

T = TypeVar("T")
Rng = random.Random
Ctx = Mapping[str, str]


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def pick(rng: Rng, options: Sequence[T]) -> T:
    """Return one element of ``options``, uniformly."""
    return options[rng.randrange(len(options))]


def pick_weighted(rng: Rng, weights: Mapping[T, float]) -> T:
    """Return one key of ``weights``, with probability proportional to its value."""
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def chance(rng: Rng, p: float) -> bool:
    """Return True with probability ``p``."""
    return rng.random() < p


def fill(template: str, ctx: Ctx) -> str:
    """Fill ``{placeholders}`` in ``template`` from ``ctx``."""
    return template.format_map(ctx)


def upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def ascii_words(text: str) -> list[str]:
    """The ASCII words of ``text``, lower-cased, accents stripped, other scripts dropped."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.findall(r"[a-z0-9]+", plain.lower())


def ascii_slug(text: str) -> str:
    return "".join(ascii_words(text))


def bullet_list(rng: Rng, items: Sequence[str]) -> str:
    """Format ``items`` as a bullet or numbered list in one of several styles."""
    style = pick(rng, ("- ", "* ", "• ", "numbered"))
    if style == "numbered":
        return "\n".join(f"{i}. {item}" for i, item in enumerate(items, start=1))
    return "\n".join(style + item for item in items)


def smarten(text: str) -> str:
    """Turn typewriter punctuation into what word processors and phones produce."""
    text = re.sub(r'"([^"\n]+)"', "“\\1”", text)
    return text.replace("'", "’").replace(" - ", " — ").replace("...", "…")


# ---------------------------------------------------------------------------
# Money, dates and identifiers
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MoneyStyle:
    template: str  # contains {n}
    group: str
    decimal: str  # "" for currencies written without minor units


@dataclass(frozen=True)
class Currency:
    code: str
    per_usd: float
    styles: tuple[MoneyStyle, ...]


def _styles(*specs: tuple[str, str, str]) -> tuple[MoneyStyle, ...]:
    return tuple(MoneyStyle(*spec) for spec in specs)


CURRENCIES: dict[str, Currency] = {
    "USD": Currency(
        "USD", 1.0, _styles(("${n}", ",", "."), ("{n} USD", ",", "."), ("US${n}", ",", "."))
    ),
    "GBP": Currency("GBP", 0.79, _styles(("£{n}", ",", "."), ("GBP {n}", ",", "."))),
    "EUR": Currency(
        "EUR",
        0.92,
        _styles(
            ("€{n}", ",", "."),
            ("{n} €", ".", ","),
            ("{n}\u202f€", "\u202f", ","),
            ("EUR {n}", ",", "."),
            ("{n} EUR", ".", ","),
        ),
    ),
    "CHF": Currency("CHF", 0.88, _styles(("CHF {n}", "'", "."), ("{n} CHF", "'", "."))),
    "AUD": Currency("AUD", 1.52, _styles(("A${n}", ",", "."), ("AUD {n}", ",", "."))),
    "CAD": Currency("CAD", 1.37, _styles(("CA${n}", ",", "."), ("${n} CAD", ",", "."))),
    "NZD": Currency(
        "NZD",
        1.65,
        _styles(
            ("NZ${n}", ",", "."),
        ),
    ),
    "INR": Currency("INR", 84.0, _styles(("₹{n}", ",", "."), ("Rs. {n}", ",", "."))),
    "JPY": Currency("JPY", 150.0, _styles(("¥{n}", ",", ""), ("{n}円", ",", ""))),
    "CNY": Currency(
        "CNY", 7.2, _styles(("¥{n}", ",", "."), ("{n}元", ",", "."), ("RMB {n}", ",", "."))
    ),
    "KRW": Currency("KRW", 1350.0, _styles(("₩{n}", ",", ""), ("{n}원", ",", ""))),
    "BRL": Currency("BRL", 5.3, _styles(("R$ {n}", ".", ","), ("R${n}", ".", ","))),
    "MXN": Currency("MXN", 18.0, _styles(("MX${n}", ",", "."), ("${n} MXN", ",", "."))),
}

CURRENCIES_BY_LOCALE: dict[str, dict[str, float]] = {
    "en": {"USD": 50, "GBP": 20, "EUR": 8, "AUD": 8, "CAD": 7, "NZD": 3, "INR": 4},
    "fr": {"EUR": 85, "CHF": 10, "CAD": 5},
    "de": {"EUR": 85, "CHF": 15},
    "es": {"EUR": 75, "MXN": 25},
    "pt": {"BRL": 70, "EUR": 30},
    "ja": {"JPY": 1},
    "zh": {"CNY": 1},
    "ko": {"KRW": 1},
}

PLAN_PRICES_USD = (12, 19, 29, 49, 79, 99, 149, 249)


def format_money(rng: Rng, currency: Currency, usd: float, *, round_price: bool = False) -> str:
    """Write ``usd`` (converted to ``currency``) the way a person might type it."""
    style = pick(rng, currency.styles)
    value = usd * currency.per_usd
    if not style.decimal:
        units, cents = int(round(value, -1 if value < 10_000 else -2)), None
    elif round_price:
        units, cents = round(value), 0
    else:
        units, cents = int(value), round((value % 1) * 100) % 100
    number = f"{units:,}".replace(",", style.group)
    if cents is not None:
        number += f"{style.decimal}{cents:02d}"
    return style.template.format(n=number)


MONTHS: dict[str, tuple[str, ...]] = {
    "en": (
        "January", "February", "March", "April", "May", "June", "July", "August",
        "September", "October", "November", "December",
    ),
    "fr": (
        "janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
        "octobre", "novembre", "décembre",
    ),
    "de": (
        "Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September",
        "Oktober", "November", "Dezember",
    ),
    "es": (
        "enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre",
        "octubre", "noviembre", "diciembre",
    ),
    "pt": (
        "janeiro", "fevereiro", "março", "abril", "maio", "junho", "julho", "agosto",
        "setembro", "outubro", "novembro", "dezembro",
    ),
}  # fmt: skip


def human_date(rng: Rng, day: date, lang: str) -> str:
    """A date as someone writing in ``lang`` would put it in a message."""
    m, d = day.month, day.day
    if lang in ("ja", "zh"):
        return f"{m}月{d}日"
    if lang == "ko":
        return f"{m}월 {d}일"
    month = MONTHS[lang][m - 1]
    if lang == "fr":
        return f"{'1er' if d == 1 else d} {month}"
    if lang == "de":
        return f"{d}. {month}"
    if lang in ("es", "pt"):
        return f"{d} de {month}"
    styles = (f"{month} {d}", f"{d} {month}", f"{month[:3]} {d}", day.isoformat(), f"{m}/{d}")
    return pick(rng, styles)


def uuid_like(rng: Rng) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def vat_number(rng: Rng, locale: str) -> str:
    digits = "".join(str(rng.randrange(10)) for _ in range(9))
    prefix = {"fr": "FR4", "de": "DE", "es": "ESB", "pt": "PT"}.get(locale)
    return (prefix or pick(rng, ("GB", "IE", "NL", "BE0"))) + digits


# ---------------------------------------------------------------------------
# Customers and people
# ---------------------------------------------------------------------------

LOCALE_WEIGHTS = {
    "en": 62,
    "fr": 7,
    "de": 8,
    "es": 7,
    "pt": 6,
    "ja": 4,
    "zh": 3,
    "ko": 3,
}
NATIVE_LANGUAGE_SHARE = 0.7  # share of tickets from non-English customers not in English
LANGUAGE_NAMES = {
    "fr": "French",
    "de": "German",
    "es": "Spanish",
    "pt": "Portuguese",
    "ja": "Japanese",
    "zh": "Mandarin",
    "ko": "Korean",
}

FIRST_NAMES: dict[str, tuple[str, ...]] = {
    "en": (
        "Sarah", "Mike", "Priya", "Tom", "Aisha", "Dan", "Chloé", "Zoë", "Renée", "José",
        "Björn", "Siobhán", "Nathan", "Grace", "Omar", "Lena", "Marcus", "Hannah", "Raj",
        "Emily", "Kwame", "Fiona", "Noémie", "Jake", "Olivia", "Wei", "Carlos", "Beth",
    ),
    "fr": ("Amélie", "Hélène", "François", "Jérôme", "Séverine", "Benoît", "Camille", "Loïc",
           "Gaëlle", "Thibault", "Océane", "Cédric"),
    "de": ("Jürgen", "Käthe", "Sören", "Lukas", "Anja", "Jörg", "Maximilian", "Bärbel",
           "Tobias", "Ursula", "Jana", "Björn"),
    "es": ("José", "María", "Íñigo", "Begoña", "Raúl", "Lucía", "Andrés", "Marta",
           "Sebastián", "Inés", "Álvaro", "Nuria"),
    "pt": ("João", "Conceição", "Luís", "Gonçalo", "Mônica", "Thiago", "Fernanda", "Antônio",
           "Beatriz", "Caio", "Letícia", "Vinícius"),
    "ja": ("健", "美咲", "翔", "由紀", "大輔", "彩", "陽菜", "拓海"),
    "zh": ("伟", "娜", "敏", "洋", "静", "磊", "婷", "浩然"),
    "ko": ("민준", "서연", "지훈", "유진", "하늘", "도윤", "수아", "예준"),
}  # fmt: skip

LAST_NAMES: dict[str, tuple[str, ...]] = {
    "en": (
        "Hart", "Delaney", "Okafor", "Brennan", "Whitfield", "Patel", "Kowalski", "O'Neill",
        "MacLeod", "Fairbanks", "Ashdown", "Quinlan", "Ferreira", "Lindqvist", "Adeyemi",
        "Castellano", "Thornbury", "Rowe", "Penhaligon", "Marsh", "Abbott", "Greer",
        "Sandoval", "Whitlock", "Chandra", "Holloway", "Prescott", "Vance", "Ellery", "Nguyen",
    ),
    "fr": ("Lefèvre", "Moreau", "Girard", "Bérenger", "Fournier", "Chastel", "Duval",
           "Mercier", "Rousseau", "Lemaître", "Faure", "Gauthier", "Thébault", "Crémieux"),
    "de": ("Müller", "Schäfer", "Weiß", "Köhler", "Groß", "Brandt", "Hoffmann", "Krüger",
           "Vogel", "Lange", "Böhm", "Jäger", "Schröder", "Fuchs"),
    "es": ("Peña", "García", "Núñez", "Ibáñez", "Muñoz", "Fernández", "Ortega", "Castaño",
           "Ruiz", "Jiménez", "Domínguez", "Serrano"),
    "pt": ("Conceição", "Gonçalves", "Araújo", "Magalhães", "Simões", "Brandão", "Assunção",
           "Falcão", "Lopes", "Ribeiro", "Guimarães", "Loureiro"),
    "ja": ("佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村"),
    "zh": ("王", "李", "张", "刘", "陈", "杨", "黄", "周"),
    "ko": ("김", "이", "박", "최", "정", "강", "윤", "한"),
}  # fmt: skip

COMPANY_TEMPLATES: dict[str, tuple[str, ...]] = {
    "en": (
        "{last} & {last2}",
        "{last}, {last2} & {last3} LLP",
        '{last}, {last2} & "Co"',
        "{adj} {noun} {suffix}",
        "{last} {trade}",
        "The {adj} {noun} Company",
        '"{adj} {noun}" {trade}',
        "{adj}{noun_lower} {suffix}",
        "{last} {trade}, Inc.",
        "{first}'s {trade}",
    ),
    "fr": (
        "Boulangerie {last}",
        "Atelier {last} & Fils",
        "{last} Rénovation SARL",
        "Cabinet {last}, {last2} & Associés",
        "Éditions {last}",
        "Café {word}",
        "Les Ateliers {word} SAS",
    ),
    "de": (
        "{last} Logistik GmbH",
        "Bäckerei {last}",
        "{last} & Söhne KG",
        "Zahnarztpraxis Dr. {last}",
        "{last} Elektrotechnik e.K.",
        "{last}-{last2} Metallbau GmbH",
        "Ingenieurbüro {last} & Partner",
    ),
    "es": (
        "{last} & Asociados",
        "Panadería {last}",
        "Construcciones {last} S.L.",
        "Clínica Dental {last}",
        "Talleres {last} Hnos.",
        "Distribuciones {last}-{last2}, S.A.",
        "Café {word}",
    ),
    "pt": (
        "{last} Distribuidora Ltda",
        "Padaria {last}",
        "{last} & Filhos Comércio Ltda.",
        "Construtora {last} S.A.",
        "Ótica {last}",
        "Estúdio {word}",
    ),
    "ja": ("株式会社{word}", "{word}商事株式会社", "{word}デザイン事務所", "合同会社{word}"),
    "zh": (
        "{word}贸易有限公司",
        "{word}科技有限公司",
        "{word}设计工作室",
        "{word}餐饮管理有限公司",
    ),
    "ko": ("(주){word}", "{word}디자인", "{word}상사", "주식회사 {word}"),
}

COMPANY_WORDS: dict[str, tuple[str, ...]] = {
    "en": (),
    "fr": ("Lumière", "de l'Étoile", "Côté Jardin", "du Pré Vert", "Régal", "Bleu Azur"),
    "de": (),
    "es": ("La Alegría", "El Olivo", "Mar Azul", "La Pequeña Huerta"),
    "pt": ("Maré Alta", "Ipê Amarelo", "Sabiá", "Casa Nova"),
    "ja": ("サクラ", "青葉", "ひかり", "北斗", "若葉", "東雲", "みなと", "桜井"),
    "zh": ("华信", "远航", "星河", "金桥", "明德", "锦程", "恒达"),
    "ko": ("한빛", "푸른솔", "새봄", "다온", "마루", "하늬"),
}

EN_ADJECTIVES = (
    "Bright", "Blue", "Copper", "Silver", "North", "Iron", "Golden", "Quiet", "Little",
    "Summit", "Maple", "Cedar", "River", "Red", "Wild", "Open",
)  # fmt: skip
EN_NOUNS = (
    "Harbor", "Lantern", "Fox", "Anchor", "Orchard", "Meadow", "Beacon", "Pine", "Stone",
    "Kettle", "Ridge", "Sparrow", "Bridge", "Field", "Oak", "Wharf",
)  # fmt: skip
EN_SUFFIXES = ("LLC", "Inc.", "Ltd", "Co.", "Studio", "Group", "Partners", "Pty Ltd")
EN_TRADES = (
    "Plumbing", "Landscaping", "Bakery", "Dental Care", "Architects", "Consulting",
    "Print Shop", "Electrical", "Catering", "Veterinary Clinic", "Yoga Studio", "Roofing",
    "Auto Repair", "Photography", "Bookkeeping", "Joinery", "Design", "Coffee Roasters",
)  # fmt: skip

INVOICE_STYLES: dict[str, tuple[str, ...]] = {
    "en": ("INV-{year}-{n:04d}", "#{n}", "INV{n:05d}", "LDG-{n}"),
    "fr": ("F{year}-{n:04d}", "FAC-{n:04d}"),
    "de": ("RE-{year}-{n:04d}", "R{n:05d}"),
    "es": ("FAC-{n:04d}", "{year}/{n:04d}"),
    "pt": ("FAT-{n:05d}", "NF-{n}"),
    "ja": ("INV-{year}-{n:04d}",),
    "zh": ("INV{year}{n:05d}",),
    "ko": ("INV-{year}-{n:04d}",),
}


@dataclass(frozen=True)
class Customer:
    name: str
    locale: str
    currency: str
    invoice_style: str

    def invoice_number(self, n: int) -> str:
        return self.invoice_style.format(year=TICKET_YEAR, n=n)


@dataclass(frozen=True)
class Person:
    first: str
    last: str
    locale: str

    @property
    def full(self) -> str:
        if self.locale == "ja":
            return f"{self.last} {self.first}"
        if self.locale in ("zh", "ko"):
            return self.last + self.first
        return f"{self.first} {self.last}"


def make_person(rng: Rng, locale: str) -> Person:
    return Person(pick(rng, FIRST_NAMES[locale]), pick(rng, LAST_NAMES[locale]), locale)


def company_name(rng: Rng, locale: str) -> str:
    """Invent a company name in the style of ``locale``."""
    last, last2, last3 = rng.sample(LAST_NAMES[locale], 3)
    noun = pick(rng, EN_NOUNS)
    words = COMPANY_WORDS[locale] or ("",)
    return pick(rng, COMPANY_TEMPLATES[locale]).format(
        last=last,
        last2=last2,
        last3=last3,
        first=pick(rng, FIRST_NAMES[locale]),
        adj=pick(rng, EN_ADJECTIVES),
        noun=noun,
        noun_lower=noun.lower(),
        suffix=pick(rng, EN_SUFFIXES),
        trade=pick(rng, EN_TRADES),
        word=pick(rng, words),
    )


def make_customers(rng: Rng, count: int) -> list[Customer]:
    """A pool of distinct customers; earlier ones will file more tickets."""
    customers: list[Customer] = []
    seen: set[str] = set()
    while len(customers) < count:
        locale = pick_weighted(rng, LOCALE_WEIGHTS)
        name = company_name(rng, locale)
        if name in seen:
            continue
        seen.add(name)
        currency = pick_weighted(rng, CURRENCIES_BY_LOCALE[locale])
        customers.append(Customer(name, locale, currency, pick(rng, INVOICE_STYLES[locale])))
    return customers


# ---------------------------------------------------------------------------
# English ticket phrase banks
# ---------------------------------------------------------------------------

AREAS = ("billing", "invoices", "payments", "integrations", "account", "reports", "mobile")
AREA_WEIGHTS = {
    "billing": 12,
    "invoices": 25,
    "payments": 18,
    "integrations": 15,
    "account": 12,
    "reports": 10,
    "mobile": 8,
}
KIND_WEIGHTS = {
    "bug": 28,
    "how_to": 19,
    "billing_dispute": 12,
    "feature_request": 12,
    "complaint": 14,
    "praise": 7,
    "spam": 8,
}
CHANNEL_WEIGHTS = {"email": 45, "web": 25, "chat": 20, "phone": 10}
LEVEL_WEIGHTS: dict[str, dict[int, float]] = {  # 0 = one line ... 3 = long email thread
    "email": {0: 12, 1: 34, 2: 32, 3: 22},
    "web": {0: 20, 1: 44, 2: 28, 3: 8},
    "chat": {0: 45, 1: 40, 2: 15},
    "phone": {0: 25, 1: 55, 2: 20},
}

AGENTS = ("Maya", "Jonas", "Priya", "Léa", "Tomás", "Kenji", "Ana", "Ben", "Ingrid", "Sam")
TOOLS = (
    "QuickBooks Online", "Xero", "Zapier", "Slack", "HubSpot", "Shopify", "Google Sheets",
    "Salesforce", "Stripe", "PayPal",
)  # fmt: skip
INDUSTRIES = (
    "design", "plumbing", "accounting", "e-commerce", "construction", "marketing", "dental",
    "software consulting", "catering", "architecture", "landscaping", "photography",
)  # fmt: skip
REGIONS = (
    "the EU", "the US", "Canada", "Australia and New Zealand", "the Nordics",
    "Latin America", "Japan", "the UK and Ireland",
)  # fmt: skip
BROWSERS = (
    "Chrome 138 on Windows 11", "Safari 19 on macOS", "Firefox 141 on Ubuntu",
    "Edge 138 on Windows 10", "Chrome on a Chromebook",
)  # fmt: skip
IPHONES = ("iPhone 15, iOS 19.1", "iPhone 13 mini, iOS 18.6", "iPhone 16 Pro, iOS 19.0.1")
DEVICES = (*IPHONES, "Pixel 8, Android 16", "Galaxy S23, Android 15", "iPad Air, iPadOS 19")
STREETS = ("Harbour Road", "Mill Lane", "Station Street", "Orchard Way", "King's Parade")
CITIES = ("Springfield", "Riverton", "Lakeside", "Fairview", "Kingsbridge", "Ashford")
PLANS = ("Starter", "Pro", "Business", "Business (annual)", "Accountant Partner", "Free trial")
TITLES = (
    "Owner", "Finance Manager", "Bookkeeper", "Office Manager", "CFO", "Founder",
    "Accounts Payable", "Operations Lead", "Managing Director", "Accounts Assistant",
)  # fmt: skip


@dataclass(frozen=True)
class Issue:
    """One thing a customer can write in about, with short and long wording."""

    subject: str
    short: str
    detail: str
    error: str | None = None
    bullets: tuple[str, ...] = ()


ERRORS: dict[str, str] = {
    "card_setup": "Payment method update failed (code: card_setup_timeout)\nRequest ID: {req_id}",
    "blank_page": "Something went wrong. Please try again later. (ref: {short_id})",
    "vat_invalid": (
        "VAT number {vat} could not be validated. "
        "Please check the format (e.g. DE123456789) and try again."
    ),
    "invoice_locked": (
        '{{"error": {{"code": "invoice_locked", "message": "Invoice {invoice} cannot be '
        'edited after it has been sent.", "request_id": "{req_id}"}}}}'
    ),
    "js_type": (
        "Uncaught TypeError: Cannot read properties of undefined (reading 'lineItems')\n"
        "    at renderInvoice (app.4f2c9e.js:1:88213)\n"
        "    at Array.map (<anonymous>)\n"
        "    at InvoiceEditor (app.4f2c9e.js:1:90417)"
    ),
    "link_404": "404 - This payment link doesn't exist or has been deactivated.",
    "payout": "Payout po_{hex} - status: in_transit (expected arrival {date_iso})",
    "card_declined": "Payment failed: card_declined (decline_code: do_not_honor)",
    "3ds": (
        "3D Secure authentication failed for payment pi_{hex}. "
        "The customer's bank did not complete the challenge."
    ),
    "sync_conflict": (
        '[{date_iso} {time}] SyncError: 409 Conflict - customer "{client}" already exists '
        "in QuickBooks (Id={qb_id})\n"
        "[{date_iso} {time}] Retrying in 300s (attempt 14 of 20)"
    ),
    "webhook_sig": (
        "POST /hooks/ledgerly -> 401 Unauthorized\n"
        "X-Ledgerly-Signature: t={ts},v1={hexsig}\n"
        'response: {{"error":"signature_mismatch"}}'
    ),
    "api_500": (
        "HTTP/1.1 500 Internal Server Error\n"
        "Content-Type: application/json\n\n"
        '{{"error": {{"type": "internal_error", "message": "An unexpected error occurred.", '
        '"request_id": "{req_id}"}}}}'
    ),
    "rate_limit": (
        "HTTP/1.1 429 Too Many Requests\nRetry-After: 30\n\n"
        '{{"error": "rate_limited", "limit": 120, "window": "60s"}}'
    ),
    "2fa": "Invalid verification code. You have 2 attempts remaining.",
    "invite_expired": "This invitation has expired. Ask your workspace admin to send a new one.",
    "sso_loop": (
        "SAML response rejected: Audience mismatch "
        '(expected "https://app.ledgerly.example/saml/metadata", got "ledgerly")'
    ),
    "csv_mojibake": (
        "Client,Invoice,Amount due\n"
        '"CafÃ© LumiÃ¨re",{invoice},"1.249,00"\n'
        '"MÃ¼ller & SÃ¶hne KG",{invoice2},"980,00"'
    ),
    "gateway_timeout": "504 Gateway Time-out\nThe server didn't respond in time. (ref: {short_id})",
    "ios_crash": (
        "Ledgerly 4.{minor}.1 ({iphone}) - EXC_BAD_ACCESS (SIGSEGV)\n"
        "Thread 0 Crashed:\n"
        "0  Ledgerly  ReceiptScannerViewController.captureOutput(_:didOutput:) + 412\n"
        "1  AVFCapture  -[AVCapturePhotoOutput _handlePhoto] + 96"
    ),
    "android_crash": (
        "java.lang.IllegalStateException: Fragment InvoiceListFragment not attached to a "
        "context.\n"
        "\tat androidx.fragment.app.Fragment.requireContext(Fragment.java:972)\n"
        "\tat com.ledgerly.app.invoices.InvoiceListFragment.onRefresh(InvoiceListFragment.kt:88)"
    ),
}

BUGS: dict[str, tuple[Issue, ...]] = {
    "billing": (
        Issue(
            "Can't update credit card",
            "can't update the card on file, the save button just spins",
            "When I try to update the card on file under Settings > Billing, the Save button "
            "spins forever and the old card stays on the account.",
            "card_setup",
        ),
        Issue(
            "Upgrade page shows an error",
            "upgrade page just says something went wrong",
            'Clicking "Upgrade to Business" takes me to a blank page that just says '
            '"Something went wrong". I\'ve tried a few times over the last two days.',
            "blank_page",
        ),
        Issue(
            "Billing history is empty",
            "billing history tab is empty??",
            "The billing history tab has been empty since {date}, even though our subscription "
            "payments are going through every month. I need the receipts for our accountant.",
        ),
        Issue(
            "VAT number rejected",
            "our VAT number keeps getting rejected",
            "Our VAT number {vat} is valid (I checked it on the EU's own validation site) but "
            "Ledgerly says it's invalid and keeps adding VAT to our subscription.",
            "vat_invalid",
        ),
    ),
    "invoices": (
        Issue(
            "Invoice PDF is missing line items",
            "the PDF for {invoice} is missing line items",
            "When I download the PDF for {invoice}, only the first {m} line items show up and "
            "the rest are cut off. The web view shows all {n} of them correctly.",
        ),
        Issue(
            "Recurring invoices didn't go out",
            "recurring invoices didnt send this month",
            "Our recurring invoices scheduled for the 1st were never sent. The schedule still "
            'says "Active" and nothing shows up in the activity log. Clients are now asking '
            "where their invoices are.",
        ),
        Issue(
            "Wrong tax rate on invoice",
            "tax on {invoice} is wrong",
            "The tax on {invoice} is being calculated at {pct}% instead of {pct2}%. I've "
            "double-checked the rate under Settings > Taxes and it's correct there.",
        ),
        Issue(
            "Can't edit an invoice after sending",
            "can't edit {invoice} after sending it",
            "I spotted a typo in {invoice} after sending it and now I can't change it at all. "
            "This is what comes back when I click Save:",
            "invoice_locked",
        ),
        Issue(
            "Invoice editor goes blank when adding a line",
            "invoice editor crashes when i add a line",
            "The invoice editor goes blank as soon as I add a new line item. The browser "
            "console shows this:",
            "js_type",
            (
                "Open any draft invoice",
                'Click "Add line"',
                "Type anything in the description field",
                "The whole page turns white",
            ),
        ),
        Issue(
            "Invoice numbers skipped",
            "invoice numbers jumped from {invoice} to {invoice2}",
            "Our invoice numbering jumped from {invoice} to {invoice2} overnight. Our "
            "accountant says we need a continuous sequence for the tax office, so we need this "
            "fixed or at least explained.",
        ),
    ),
    "payments": (
        Issue(
            "Client paid but invoice still shows unpaid",
            "client paid {invoice} but it still says unpaid",
            "{client} paid {invoice} ({amount}) by card on {date}. The money is in our bank "
            "account, but Ledgerly still shows the invoice as Outstanding and sent them an "
            "automatic reminder, which was embarrassing.",
        ),
        Issue(
            "Payment link returns 404",
            "payment link is broken",
            'The "Pay now" link on {invoice} takes clients to an error page:',
            "link_404",
        ),
        Issue(
            "Payout hasn't arrived",
            "where is my payout?",
            "Our payout of {amount} was supposed to arrive on {date} and it still hasn't shown "
            "up. The dashboard says:",
            "payout",
        ),
        Issue(
            "Card payments failing for several clients",
            "clients' cards keep getting declined",
            "At least {m} clients told me this week that their card payment fails at the last "
            "step. The error they see is:",
            "card_declined",
        ),
        Issue(
            "3D Secure failing for EU customers",
            "3DS failing for european clients",
            "European clients can't complete card payments - the bank's 3D Secure window opens, "
            "they approve it, and then the payment fails anyway.",
            "3ds",
        ),
    ),
    "integrations": (
        Issue(
            "QuickBooks sync stuck",
            "quickbooks sync is stuck",
            'The QuickBooks Online sync has been stuck on "Syncing..." since {date}. The sync '
            "log shows this over and over:",
            "sync_conflict",
        ),
        Issue(
            "Xero keeps disconnecting",
            "xero disconnects every few days",
            "Every few days the Xero connection drops and I have to re-authorise it. While it's "
            "disconnected, payments don't get reconciled and I have to fix them by hand.",
        ),
        Issue(
            "Zapier trigger not firing",
            'zapier "new paid invoice" trigger stopped working',
            'The "New paid invoice" trigger in Zapier hasn\'t fired since {date}, even though '
            "we've had {n} paid invoices since then. Other triggers still work.",
        ),
        Issue(
            "Webhook signature doesn't match",
            "webhook signature mismatch",
            "Our webhook endpoint started rejecting calls from Ledgerly because the signature "
            "doesn't validate. We haven't changed the secret. Example from our logs:",
            "webhook_sig",
        ),
        Issue(
            "API returns 500 when listing invoices",
            "API 500 on /v2/invoices",
            "GET /v2/invoices?status=paid&page=3 returns a 500 every single time. Pages 1 and 2 "
            "are fine.",
            "api_500",
        ),
        Issue(
            "Hitting rate limits on the API",
            "getting 429s from the api",
            "We're being rate limited even though we make maybe {n} requests a minute, which "
            "is well under the documented limit:",
            "rate_limit",
        ),
    ),
    "account": (
        Issue(
            "2FA code not accepted",
            "2FA code not working",
            "The codes from my authenticator app are rejected every time. The clock on my phone "
            "is set automatically, so it isn't that.",
            "2fa",
        ),
        Issue(
            "Password reset email never arrives",
            "no password reset email",
            "I've requested a password reset {m} times and no email has arrived - not in spam "
            "either. Our mail server doesn't block anything from ledgerly.example.",
        ),
        Issue(
            "Invite link says expired",
            "team invite expired straight away",
            "I invited our new bookkeeper ten minutes ago and the link already says:",
            "invite_expired",
        ),
        Issue(
            "SSO login loop",
            "stuck in an SSO login loop",
            "Since we rotated our SAML certificate, everyone on the team gets stuck in a login "
            "loop. Our identity provider logs show:",
            "sso_loop",
        ),
        Issue(
            "Locked out after changing email",
            "locked out after changing my login email",
            "I changed my login email from my old address to our new company domain and now I "
            "can't log in with either of them.",
        ),
    ),
    "reports": (
        Issue(
            "P&L doesn't match paid invoices",
            "P&L numbers are off",
            "The Profit & Loss report for Q{q} shows {amount} in revenue, but the paid invoices "
            "for that quarter add up to {amount2}. I can't work out where the difference comes "
            "from.",
        ),
        Issue(
            "CSV export has garbled characters",
            "csv export is garbled",
            "When I export the Aged Receivables report to CSV and open it in Excel, every "
            "accented character comes out garbled. This is what I get:",
            "csv_mojibake",
        ),
        Issue(
            "Reports time out",
            "reports won't load",
            "Any report covering more than six months fails to load and eventually shows:",
            "gateway_timeout",
        ),
        Issue(
            "Scheduled report emails stopped",
            "scheduled reports stopped arriving",
            "The weekly cash-flow report that's scheduled to email me every Monday stopped "
            "arriving after {date}.",
        ),
        Issue(
            "Dashboard shows the wrong month",
            "dashboard still shows last month",
            "The revenue chart on the dashboard still shows last month as the current month, "
            "even after logging out and back in.",
        ),
    ),
    "mobile": (
        Issue(
            "App crashes when scanning a receipt",
            "app crashes when I scan receipts",
            'The iPhone app crashes every time I tap "Scan receipt". The crash report says:',
            "ios_crash",
        ),
        Issue(
            "Android app crashes on invoice list",
            "android app crashes opening invoices",
            "The Android app closes itself as soon as I pull down to refresh the invoice list. "
            "My colleague grabbed this from the logs:",
            "android_crash",
        ),
        Issue(
            "No push notifications",
            "not getting payment notifications anymore",
            "I stopped getting push notifications for payments after the last update. "
            "Notifications are enabled for Ledgerly in the phone settings.",
        ),
        Issue(
            "Invoices created offline disappeared",
            "invoices i made offline vanished",
            "I created {m} invoices in the app while I was on a site visit without signal. When "
            "I got back online they were gone.",
        ),
        Issue(
            "Can't attach PDF on mobile",
            "can't attach a pdf from my phone",
            "Attaching a PDF to an invoice from the app does nothing - the file picker closes "
            "and no attachment appears.",
        ),
    ),
}

DISPUTES: dict[str, tuple[Issue, ...]] = {
    "billing": (
        Issue(
            "Charged twice this month",
            "we got charged twice",
            "We were charged {price} twice on {date} for the same subscription. Please refund "
            "the duplicate charge.",
            bullets=("{date}: {price} - Ledgerly {plan}", "{date}: {price} - Ledgerly {plan}"),
        ),
        Issue(
            "Charged after cancelling",
            "charged after I cancelled",
            "I cancelled our subscription on {date} (I still have the confirmation email) but "
            "we were charged {price} again this month.",
        ),
        Issue(
            "Billed for the wrong plan",
            "billed for the wrong plan",
            "We're on the Starter plan, which should be {price} a month, but your latest "
            "invoice to us is for {amount}.",
        ),
        Issue(
            "Charged for inactive seats",
            "charged for seats we don't use",
            "Our latest bill includes {n} seats but we only have {m} active users. We removed "
            "the others weeks ago.",
        ),
        Issue(
            "Refund for accidental annual upgrade",
            "upgraded to annual by mistake, need a refund",
            "Someone on my team accidentally switched us to annual billing yesterday and we "
            "were charged {amount}. We'd like to go back to monthly and get the difference "
            "refunded.",
        ),
    ),
    "payments": (
        Issue(
            "Processing fees higher than advertised",
            "fees are higher than your pricing page says",
            "Your pricing page says {rate}% + {fee} per card payment, but on our last payout "
            "you kept {amount} in fees on {amount2} of payments. That's far more than it "
            "should be.",
        ),
        Issue(
            "Disputed chargeback fee",
            "why was I charged a chargeback fee",
            "We were charged a {fee_big} chargeback fee for a payment that the client says they "
            "never disputed.",
        ),
        Issue(
            "Payout short",
            "payout is short",
            "The payout for {date} is {amount} less than the total of the invoices it says it "
            "includes.",
        ),
    ),
}

FEATURES: dict[str, tuple[Issue, ...]] = {
    "billing": (
        Issue(
            "Pay our subscription by bank transfer",
            "can we pay by bank transfer instead of card?",
            "Our finance team would prefer to pay for Ledgerly by bank transfer against an "
            "invoice rather than by card. Is that possible on annual plans?",
        ),
        Issue(
            "Subscription invoices in our currency",
            "can you bill us in our own currency",
            "We'd like to be billed in our local currency instead of USD - the conversion fees "
            "from our bank add up every month.",
        ),
    ),
    "invoices": (
        Issue(
            "Custom fields on invoices",
            "need custom fields on invoices",
            "We'd love to add custom fields to invoices - PO number, project code and the "
            "client's cost centre. Right now we cram all of it into the notes field.",
            bullets=(
                "a PO number field that shows under the invoice number",
                "a project code we can filter reports by",
                "optional per client, not for everyone",
            ),
        ),
        Issue(
            "Invoices in more than one language",
            "invoices in other languages?",
            "About a third of our clients are in {region}. Being able to send the same template "
            "in French, German or Spanish would save us a lot of manual work.",
        ),
        Issue(
            "Proper credit notes",
            "please add credit notes",
            "We need proper credit notes instead of negative invoices. Our accountant flags "
            "this every quarter.",
        ),
        Issue(
            "Bulk edit due dates",
            "bulk edit due dates please",
            "It would be great to select a bunch of draft invoices and change their due dates "
            "in one go instead of opening each one.",
        ),
    ),
    "payments": (
        Issue(
            "SEPA Direct Debit",
            "any plans for SEPA direct debit?",
            "Most of our clients are in {region} and would rather pay by direct debit than by "
            "card. Is SEPA Direct Debit on the roadmap?",
        ),
        Issue(
            "Instalment plans",
            "let clients pay in instalments",
            "Some of our bigger jobs are {amount} or more. Letting clients split an invoice "
            "into three or four scheduled payments would help a lot.",
            bullets=(
                "choose the number of instalments per invoice",
                "automatic reminders before each one",
                "show what's left to pay on the client portal",
            ),
        ),
        Issue(
            "Let clients save their card",
            "can clients save their card for next time",
            "Regular clients keep asking if they can save their card so they don't have to type "
            "it in every month.",
        ),
    ),
    "integrations": (
        Issue(
            "Native {tool} integration",
            "any plans for a {tool} integration?",
            "We run everything else through {tool} and going via Zapier is fragile. A native "
            "integration would be a big deal for us.",
        ),
        Issue(
            "Two-way Google Sheets sync",
            "two way google sheets sync",
            "The Google Sheets export is one-way. We'd like edits to client details in the "
            "sheet to flow back into Ledgerly.",
        ),
        Issue(
            "Webhooks for expenses",
            "webhooks for expense events",
            "There are webhooks for invoices and payments but nothing for expenses. We'd like "
            "expense.created and expense.approved events.",
        ),
    ),
    "account": (
        Issue(
            "More granular user roles",
            "need more user roles",
            "We need a role that can create and send invoices but can't see bank details or "
            "reports. Right now it's all or nothing.",
        ),
        Issue(
            "Audit log",
            "is there an audit log?",
            "Our auditors want to see who changed what and when. An audit log we can export "
            "would make year-end much easier.",
        ),
        Issue(
            "SSO on the Pro plan",
            "SSO without the enterprise plan",
            "We're only {size} people but our IT policy requires SSO. Any chance it could be "
            "offered on the Pro plan?",
        ),
    ),
    "reports": (
        Issue(
            "Custom date ranges on the dashboard",
            "custom date ranges on dashboard pls",
            "The dashboard only offers this month, last month and this year. Our financial "
            "year starts in April, so none of those are much use.",
        ),
        Issue(
            "Cash-flow forecast",
            "cash flow forecast would be great",
            "A simple cash-flow forecast based on due dates of open invoices and recurring "
            "expenses would be amazing.",
        ),
        Issue(
            "Excel export with formatting",
            "proper excel export",
            "Could reports export to .xlsx with the formatting kept? The CSV loses all the "
            "currency formatting and our partners hate it.",
        ),
    ),
    "mobile": (
        Issue(
            "Dark mode in the app",
            "dark mode for the app?",
            "The app is the only thing on my phone that isn't in dark mode. My eyes would thank "
            "you.",
        ),
        Issue(
            "Face ID login",
            "face id login",
            "Typing my password and a 2FA code every time I open the app is painful. Face ID or "
            "fingerprint login would be great.",
        ),
        Issue(
            "Home-screen widget",
            "widget for outstanding invoices",
            "A home-screen widget showing what's outstanding and what got paid today would be "
            "really handy.",
        ),
    ),
}

HOWTOS: dict[str, tuple[Issue, ...]] = {
    "billing": (
        Issue(
            "Where do I download receipts?",
            "where are my receipts?",
            "Where can I download receipts for our Ledgerly subscription? Our accountant needs "
            "the last {m} months.",
        ),
        Issue(
            "Changing the billing email",
            "how do i change the billing email",
            "How do I change the email address that billing receipts go to? They still go to "
            "someone who left the company.",
        ),
        Issue(
            "Switching from monthly to annual",
            "how to switch to annual billing",
            "How do I switch from monthly to annual billing, and do we get credit for the rest "
            "of this month?",
        ),
    ),
    "invoices": (
        Issue(
            "Adding a late fee",
            "how do I add a late fee",
            "Is there a way to automatically add a late fee of {pct}% once an invoice is more "
            "than 30 days overdue?",
        ),
        Issue(
            "Invoicing in another currency",
            "can i invoice in USD and EUR?",
            "We keep our books in one currency but have a new client abroad. How do I send them "
            "an invoice in their currency without messing up our reports?",
        ),
        Issue(
            "Discount on a single line item",
            "discount on one line only?",
            "Can I put a discount on just one line item rather than the whole invoice?",
        ),
        Issue(
            "Changing the invoice template",
            "how to change the invoice template",
            "How do I change the colours and font on our invoice template, and move the logo to "
            "the right-hand side?",
        ),
    ),
    "payments": (
        Issue(
            "How do I refund a client?",
            "how do I refund a client",
            "A client paid {invoice} twice by mistake. How do I refund one of the payments back "
            "to their card?",
        ),
        Issue(
            "How long do payouts take?",
            "how long do payouts take",
            "How long does it usually take for card payments to reach our bank account? Is it "
            "different for the first payout?",
        ),
        Issue(
            "Recording a cash payment",
            "how to record a cash payment",
            "A client paid {amount} in cash. How do I mark {invoice} as paid without it "
            "sending them a card receipt?",
        ),
    ),
    "integrations": (
        Issue(
            "Connecting Xero",
            "how do i connect xero",
            "How do I connect Xero, and will it pull in our existing clients or only new ones?",
        ),
        Issue(
            "Where is my API key?",
            "where do I find my API key",
            "Our developer is asking for an API key. Where do I find it, and can I create one "
            "that's read-only?",
        ),
        Issue(
            "Mapping tax codes with QuickBooks",
            "tax code mapping with quickbooks",
            "How do I map our Ledgerly tax rates to QuickBooks tax codes? Everything currently "
            'comes through as "Out of scope".',
        ),
    ),
    "account": (
        Issue(
            "Adding my bookkeeper",
            "how do I add my bookkeeper",
            "How do I give our external bookkeeper access without her being able to change bank "
            "details?",
        ),
        Issue(
            "Transferring ownership",
            "transfer account ownership",
            "I'm leaving the company at the end of the month. How do I transfer ownership of "
            "the workspace to {first2}?",
        ),
        Issue(
            "Deleting our account",
            "how do i delete my account",
            "We've closed the business. How do we delete our account, and can we export all our "
            "invoices first?",
        ),
    ),
    "reports": (
        Issue(
            "Which clients owe us the most?",
            "which report shows who owes the most",
            "Which report shows which clients owe us the most and for how long?",
        ),
        Issue(
            "Filtering reports by project",
            "filter reports by project?",
            "Can I filter the Profit & Loss report by project or tag?",
        ),
        Issue(
            "Emailing the P&L every month",
            "schedule P&L by email",
            "Can I have the P&L emailed to our two partners on the first of every month?",
        ),
    ),
    "mobile": (
        Issue(
            "Scanning receipts",
            "how do I scan receipts",
            "How do I scan receipts with the app and attach them to an expense?",
        ),
        Issue(
            "Sending invoices from my phone",
            "can I send invoices from the app",
            "Can I create and send an invoice entirely from my phone, including the PDF?",
        ),
        Issue(
            "Logging out of a lost phone",
            "lost my phone, how to log it out",
            "I lost my phone yesterday. How do I log it out of Ledgerly remotely?",
        ),
    ),
}

GENERIC_PRAISE: tuple[Issue, ...] = (
    Issue(
        "Thank you {agent}!",
        "huge thanks to {agent}!",
        "Just wanted to say a huge thanks to {agent}, who sorted out our problem in about five "
        "minutes yesterday. Really appreciate it.",
    ),
    Issue(
        "Best invoicing tool we've used",
        "best invoicing tool we've used",
        "We've been on Ledgerly for {years} years now and it's honestly the best invoicing tool "
        "we've tried. Keep it up!",
    ),
    Issue(
        "Great support",
        "your support team is great",
        "Your support team is the reason we stay. Fast, friendly, and they actually read the "
        "question before answering.",
    ),
)
AREA_PRAISE: dict[str, Issue] = {
    "reports": Issue(
        "Love the new dashboard",
        "love the new dashboard",
        "The new dashboard is brilliant - I can finally see who owes us what at a glance. "
        "Saves me a good hour every Monday.",
    ),
    "invoices": Issue(
        "Getting paid faster",
        "getting paid so much faster now",
        "Since we switched on automatic reminders, our average time to get paid dropped from "
        "about {n} days to under two weeks. Thank you!",
    ),
    "payments": Issue(
        "Card payments are a game changer",
        "clients love paying by card",
        "Turning on card payments was the best thing we did this year. Clients pay the same "
        "day and I spend far less time chasing.",
    ),
    "mobile": Issue(
        "The app is great",
        "sent an invoice from a taxi and got paid",
        "Sent an invoice from the back of a taxi today and got paid before I reached the "
        "office. Love it.",
    ),
    "integrations": Issue(
        "Xero sync works perfectly",
        "the xero sync is great",
        "Since the Xero sync was rebuilt it just works. Month-end reconciliation went from a "
        "day to about an hour.",
    ),
}

SPAM: tuple[tuple[str, str], ...] = (
    (
        "Boost your Google ranking - PAGE 1 GUARANTEED!!!",
        "Dear Website Owner,\n\nWe noticed your website is not ranking on page 1 of Google for "
        "important keywords. Our team of SEO experts can get you to the TOP POSITION in 30 days "
        'or your money back!!!\n\nReply "YES" for a FREE audit.\n\nBest Regards\n'
        "David | Senior SEO Manager",
    ),
    (
        "Business proposal",
        "Hello dear,\n\nI am writing to you with a business proposal of mutual benefit. I have "
        "a sum of USD 4,500,000.00 (four million five hundred thousand dollars) that requires "
        "a trusted foreign partner. Kindly reply with your full name, phone number and bank "
        "details so that we can proceed.\n\nYours faithfully,\nBarrister M. Okoye (Esq.)",
    ),
    (
        "Your account will be suspended",
        "Your Ledgerly account has been flagged for unusual activity. Verify your identity "
        "within 24 hours to avoid suspension:\n\n"
        "http://ledgerly-account-verify.example.net/login?session={hex}\n\n"
        "Ledgerly Security Team",
    ),
    (
        "Re: invoice",
        "pls see attached invoice and confirm payment today\n\n"
        "http://docs-share.example.org/files/INV_{short_id}.pdf.exe",
    ),
    (
        "Guest post request",
        "Hi there,\n\nI'm a freelance writer and I'd love to contribute a guest post to your "
        'blog on "10 Ways Small Businesses Can Get Paid Faster". In return I only ask for one '
        "do-follow link.\n\nLooking forward to hearing from you!",
    ),
    (
        "Get 10,000 followers",
        "Get 10,000 REAL followers for only $9.99!!! 💯💯💯 Limited time only. Visit our site "
        "now and use code GROW10.",
    ),
    ("asdf", "test test 123"),
    (
        "Verified lead list for your industry",
        "Hi,\n\nWe have a verified list of 48,500 CFOs and finance decision makers in North "
        "America, Europe and APAC. Would you like to see pricing and a free sample of 100 "
        "contacts?\n\nTo unsubscribe reply REMOVE.",
    ),
    (
        "WEB DESIGN!!!",
        "we make website for you only $199 modern design mobile friendly SEO included whatsapp "
        "us now",
    ),
    (
        "{bold_offer} 🔥🔥🔥",
        "{bold_pitch}\n\n👉 http://crypto-gains.example.com/join?ref={short_id}",
    ),
)

SPAM_SENDERS = (
    "Rank1 Digital Solutions",
    "Global Trade Leads Ltd.",
    "Mr. David Williams",
    "WINNER NOTIFICATION DEPT",
    "✨ Growth Hackers ✨",
    "info",
    "Ledgerly Security (noreply)",
    "CheapWebDesign247",
)

GREETINGS = (
    "Hi,",
    "Hello,",
    "Hi there,",
    "Hi Ledgerly team,",
    "Hello support,",
    "Good morning,",
    "Dear Ledgerly Support,",
    "Hey folks,",
    "To whom it may concern,",
    "Hi {agent},",
)
CONTEXT_LINES = (
    "We're a {size}-person {industry} business and have used Ledgerly since {since_year}.",
    "I look after the books for {n} clients through the accountant workspace.",
    "Quick background: we moved over from spreadsheets about {months} months ago.",
    "I'm the office manager here, so I'm not very technical - sorry in advance.",
    "We send roughly {n} invoices a month, mostly to clients in {region}.",
    'Our workspace is called "{workspace}", in case you need to look it up.',
)
TRIED_INTROS = (
    "Things I've already tried:",
    "What I've tried so far:",
    "Before you ask, I've already:",
)
TRIED_STEPS = (
    "cleared my browser cache and cookies",
    "tried Chrome, Firefox and Safari",
    "logged out and back in",
    "tried from a different computer",
    "reinstalled the app",
    "disconnected and reconnected the integration",
    "checked with our bank - they see nothing wrong on their side",
    "waited 24 hours in case it was a temporary glitch",
    "asked a colleague to try from their account (same result)",
    "turned off our ad blocker",
    "checked the status page, which says everything is operational",
)
BULLET_INTROS: dict[str, str] = {
    "bug": "Steps to reproduce:",
    "billing_dispute": "From our card statement:",
    "feature_request": "Ideally it would let us:",
    "complaint": "For the record:",
}
IMPACT_LINES = (
    "This is holding up {n} invoices worth roughly {amount2}.",
    "Our month-end close is this Friday and I can't finish it until this is sorted.",
    "Clients are starting to ask questions and it makes us look unprofessional.",
    "I've got a team of {m} people waiting on this, so an ETA would really help.",
    "Not urgent, but it's annoying to work around every time.",
)
ASKS: dict[str, tuple[str, ...]] = {
    "bug": (
        "Can you take a look?",
        "Could someone look into this please?",
        "Is this a known issue? Is there a workaround in the meantime?",
        "Please advise.",
        "Let me know if you need screenshots.",
    ),
    "how_to": (
        "",
        "Is there a help article for this?",
        "A step-by-step would be great.",
        "Is this possible on our plan?",
    ),
    "feature_request": (
        "Is this on the roadmap?",
        "Would love to know if this is planned.",
        "Happy to jump on a call to explain our use case.",
    ),
    "billing_dispute": (
        "Please refund the difference.",
        "Please refund the extra charge to the card on file.",
        "I'd like this corrected and a credit note issued.",
        "Please look into this and get back to me today.",
    ),
    "praise": ("", "No need to reply!", "Keep up the good work."),
}
COMPLAINT_OPENERS = (
    "This is the THIRD time I'm writing about this.",
    "I am honestly fed up.",
    "I've been waiting {n} days for someone to get back to me.",
    "Your chatbot keeps sending me the same useless help article.",
    "We pay you {price} a month for this?!",
    "Absolutely ridiculous.",
)
COMPLAINT_CLOSERS = (
    "If this isn't fixed by Friday we're cancelling and moving to another provider.",
    "I want a call from a manager today.",
    "Fix it. Now.",
    "Very disappointed - we've recommended you to other businesses and I'm regretting it.",
    "I expect a refund for the time this has cost us.",
    "Don't send me another link to the help center.",
)
ANGRY_SUBJECT_TEMPLATES = (
    "STILL BROKEN: {s}",
    "Unacceptable - {s}",
    "3rd email: {s}",
    "COMPLAINT - {s}",
    "{S}!!!",
    "{s} (again)",
)
SUGGESTIONS = (
    "One small suggestion: it would be nice to duplicate an invoice straight from the list.",
    "If I could wish for one thing it would be dark mode. 😉",
    "Only wish the mobile app had the same reports as the web version.",
)
SIGN_OFFS = (
    "Thanks,",
    "Thanks!",
    "Best,",
    "Best regards,",
    "Kind regards,",
    "Cheers,",
    "Regards,",
    "Many thanks,",
    "Thank you,",
)
TIMELINES: tuple[tuple[str, ...], ...] = (
    (
        "{date}: first noticed the problem",
        "next day: emailed support, got an automatic reply",
        "chatted with someone who said it would be escalated",
        "today: still happening",
    ),
    (
        "{date} - problem starts",
        "same day - raised it in chat",
        "two days later - asked for an update, nothing",
        "today - writing again",
    ),
    (
        "first spotted on {date}",
        "reported it through the in-app form the same day",
        "got a reply asking for screenshots and sent them",
        "no news since",
    ),
)
LONG_STORIES: dict[str, tuple[str, ...]] = {  # extra paragraphs for long, calm emails
    "feature_request": (
        "Right now our workaround is to export everything to a spreadsheet, fix it up by hand "
        "and import it again, which takes about {n} minutes each time and is easy to get "
        "wrong. Last month a copy-paste mistake meant one client got billed twice.",
        "At the moment we keep a separate spreadsheet just for this, and it's always slightly "
        "out of date. Two of us edit it and we regularly overwrite each other's changes.",
        "We've looked at a couple of other tools that do this, but honestly we'd much rather "
        "stay - everything else works well for us and moving {n} clients over would be a pain.",
        "Happy to beta test if that helps. We're a fairly typical small {industry} business, so "
        "I suspect plenty of your other customers would use it too.",
    ),
    "how_to": (
        "I had a look through the help centre and found an article that seems to describe an "
        "older version of the settings page - the options it mentions aren't where it says "
        "they are.",
        "I also asked the in-app assistant, which just linked me back to the same article. "
        "Our bookkeeper thinks it used to be under Settings > Advanced, but that menu is gone.",
        "For context, we're on the {plan} plan, in case the option only exists on some plans.",
    ),
    "praise": (
        "A bit of background: we used to write invoices in a word processor and chase payments "
        "by phone. Getting paid took forever and I dreaded the end of every month.",
        "I've recommended you to at least {m} other business owners in our local network, and "
        "the ones who switched all say the same thing.",
    ),
}
SUPPORT_REPLIES: dict[str, tuple[str, ...]] = {  # earlier replies quoted in long emails
    "bug": (
        "Thanks for getting in touch, and sorry for the trouble. Could you send us a screenshot "
        "of what you're seeing and roughly what time it happened? That will help our engineers "
        "track it down.",
        "Thanks for your patience while we looked into this. Our team has found the cause and a "
        "fix is planned for this week's release. I'll keep this ticket open and update you as "
        "soon as it's live.",
    ),
    "billing_dispute": (
        "I've passed this on to our billing team, who will review the charges and get back to "
        "you within two business days.",
    ),
    "how_to": (
        "Good question! You'll find this under Settings > Preferences. Let me know if you get "
        "stuck and I'll happily walk you through it.",
    ),
    "complaint": (
        "I'm sorry this is still causing trouble. I've escalated your case to our senior team "
        "and asked them to prioritise it.",
    ),
}
DISCLAIMER = (
    "CONFIDENTIALITY NOTICE: This e-mail and any attachments are confidential and intended "
    "solely for the addressee. If you have received it in error, please notify the sender "
    "immediately and delete it. Any unauthorised use, disclosure or copying is prohibited."
)
MOBILE_FOOTERS = ("Sent from my iPhone", "Sent from my phone - please excuse typos")
CHAT_OPENERS = ("hi", "hello", "hey", "hi there", "Hello?", "hi 👋", "good morning")
CHAT_CLOSERS = ("thx", "thanks!", "pls help", "??", "anyone there?", "thank you 🙏", "ty")
CHAT_AGENT_WRAPS: dict[str, tuple[str, ...]] = {
    "bug": (
        "Thanks, I've passed this to our engineers and will follow up by email.",
        "I can reproduce that on our side - I've raised it as a bug and linked your account.",
    ),
    "billing_dispute": (
        "Got it. I've raised this with our billing team; you'll hear back within one business day.",
    ),
    "how_to": (
        "Here's the article that walks through it: https://help.ledgerly.example/articles/{qb_id}",
        "Sure! Go to Settings > Preferences and you'll see the option at the bottom.",
    ),
    "feature_request": ("Thanks for the suggestion! I've added your vote to the request.",),
    "complaint": ("I'm really sorry about this. I've escalated it to my team lead.",),
    "praise": ("That's lovely to hear, thank you! I'll pass it on to the team 😊",),
}
PHONE_OUTCOMES: dict[str, tuple[str, ...]] = {
    "bug": (
        "Escalated to tier 2, screenshots requested.",
        "Reproduced on our side; filed as a bug.",
        "Could not reproduce. Asked customer to email a screen recording.",
    ),
    "billing_dispute": (
        "Refund approved pending finance review.",
        "Explained the charge; customer not convinced. Escalated to billing.",
        "Issued a credit note for the difference.",
    ),
    "how_to": ("Walked the customer through it on the call.", "Sent the help-centre link."),
    "feature_request": ("Logged as a feature request (+1).", "Told customer it's on the roadmap."),
    "complaint": (
        "Customer very upset. Manager callback requested.",
        "Apologised and offered one month free.",
    ),
    "praise": ("Thanked the customer and shared with the team.",),
}
EMOJI: dict[str, tuple[str, ...]] = {
    "praise": ("🎉", "🙌", "❤️", "👏", "😊", "💯"),
    "complaint": ("😡", "🤬", "😤", "👎"),
    "other": ("🙏", "😅", "🤔", "👍", "😬"),
}


# ---------------------------------------------------------------------------
# Tickets in other languages
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LangPack:
    """Phrases for writing a ticket in one language."""

    greetings: tuple[str, ...]
    sign_offs: tuple[str, ...]
    areas: Mapping[str, str]
    area_short: Mapping[str, str]
    bugs: tuple[str, ...]
    error_bugs: tuple[str, ...]  # lines that introduce a pasted error message
    specific_bugs: Mapping[str, tuple[str, ...]]
    disputes: tuple[str, ...]  # all about the Ledgerly subscription, so area "billing"
    features: Mapping[str, tuple[str, ...]]  # keyed by product area
    howtos: Mapping[str, tuple[str, ...]]  # keyed by product area
    complaints: tuple[str, ...]
    praise: tuple[str, ...]
    background: tuple[str, ...]  # who we are; fits any ticket
    followups: tuple[str, ...]  # what we tried, how urgent; for problems only
    quote_header: str  # how this language's mail clients introduce a quoted reply
    subjects: Mapping[str, tuple[str, ...]]


FRENCH = LangPack(
    greetings=("Bonjour,", "Bonjour à toute l'équipe,", "Madame, Monsieur,", "Bonsoir,"),
    sign_offs=(
        "Cordialement,",
        "Bien cordialement,",
        "Merci d'avance,",
        "Bonne journée,",
        "Dans l'attente de votre retour,",
    ),
    areas={
        "billing": "la facturation de notre abonnement",
        "invoices": "le module de factures",
        "payments": "les paiements en ligne",
        "integrations": "la synchronisation avec {tool}",
        "account": "notre compte",
        "reports": "les rapports",
        "mobile": "l'application mobile",
    },
    area_short={
        "billing": "abonnement",
        "invoices": "factures",
        "payments": "paiements",
        "integrations": "intégration {tool}",
        "account": "compte",
        "reports": "rapports",
        "mobile": "appli mobile",
    },
    bugs=(
        "Depuis le {date}, nous rencontrons un problème avec {area}.",
        "Depuis la dernière mise à jour, impossible d'utiliser {area}. La page reste blanche.",
        "Depuis ce matin, {area} est extrêmement lent, au point d'être inutilisable.",
    ),
    error_bugs=(
        "Chaque fois que j'essaie d'ouvrir {area}, le message d'erreur ci-dessous s'affiche :",
    ),
    specific_bugs={
        "billing": (
            "Notre numéro de TVA intracommunautaire {vat} est refusé alors qu'il est valide.",
        ),
        "invoices": (
            "Quand je télécharge le PDF de la facture {invoice}, le fichier est vide.",
            "Sur la facture {invoice}, la TVA est calculée à {pct} % au lieu de 20 %.",
        ),
        "payments": (
            "Un client a réglé {amount} par carte, mais la facture {invoice} apparaît toujours "
            "comme « impayée ».",
        ),
        "integrations": (
            "La connexion avec {tool} se coupe tous les deux ou trois jours et je dois la "
            "réautoriser.",
        ),
        "account": ("Je ne reçois jamais l'e-mail de réinitialisation du mot de passe.",),
        "mobile": ("L'application plante dès que j'essaie de photographier un justificatif.",),
    },
    disputes=(
        "Nous avons été prélevés deux fois de {price} le {date} pour le même abonnement. Merci "
        "de rembourser le doublon.",
        "J'ai résilié notre abonnement le {date}, mais nous avons encore été débités de "
        "{price} ce mois-ci.",
        "Le montant prélevé ({amount}) ne correspond pas au tarif de notre formule. Pouvez-vous "
        "vérifier ?",
    ),
    features={
        "invoices": (
            "Serait-il possible de générer des factures en plusieurs langues ? Une partie de "
            "nos clients est en Allemagne.",
            "Ce serait très pratique de pouvoir envoyer des relances automatiques personnalisées.",
        ),
        "reports": (
            "Il nous manque vraiment l'export du grand livre au format FEC. Est-ce prévu ?",
        ),
        "payments": (
            "Pourriez-vous proposer le prélèvement SEPA pour que nos clients paient sans carte ?",
        ),
    },
    howtos={
        "invoices": (
            "Comment faire apparaître notre numéro de TVA intracommunautaire sur les factures ?",
            "Est-il possible d'annuler une facture déjà envoyée ?",
        ),
        "billing": ("Comment changer l'adresse e-mail qui reçoit les factures de l'abonnement ?",),
        "account": ("Comment ajouter notre expert-comptable comme utilisateur ?",),
        "payments": (
            "Combien de temps faut-il pour que les paiements par carte arrivent sur notre compte "
            "bancaire ?",
        ),
    },
    complaints=(
        "C'est la troisième fois que je vous écris à ce sujet, toujours sans réponse. C'est "
        "inadmissible !",
        "Cela fait une semaine que nous ne pouvons plus utiliser {area} et personne ne nous aide.",
        "Si le problème n'est pas réglé d'ici vendredi, nous changerons de logiciel.",
    ),
    praise=(
        "Un grand merci à {agent} pour son aide hier, problème réglé en dix minutes !",
        "Je voulais simplement vous dire que la nouvelle version de l'application est vraiment "
        "réussie. Bravo à toute l'équipe 👏",
    ),
    background=(
        "Nous sommes une petite entreprise de {size} salariés et nous utilisons Ledgerly "
        "depuis {since_year}.",
        "Je m'occupe de la comptabilité de la société depuis l'an dernier.",
    ),
    followups=(
        "J'ai déjà vidé le cache du navigateur et essayé avec Firefox, sans succès.",
        "C'est assez urgent car notre clôture mensuelle est prévue vendredi.",
        "Je peux vous envoyer des captures d'écran si besoin.",
    ),
    quote_header="Le {date}, {agent} (Ledgerly Support) <support@ledgerly.example> a écrit :",
    subjects={
        "bug": ("Problème avec {area_s}", "Bug {area_s} - urgent", "Erreur : {area_s}"),
        "billing_dispute": ("Double prélèvement", "Demande de remboursement", "Erreur de montant"),
        "feature_request": ("Suggestion d'amélioration", "Demande de fonctionnalité"),
        "how_to": ("Question sur {area_s}", "Comment faire ?"),
        "complaint": ("TOUJOURS PAS RÉSOLU", "Réclamation - {area_s}", "Très mécontent"),
        "praise": ("Merci !", "Bravo pour la nouvelle version"),
    },
)

GERMAN = LangPack(
    greetings=(
        "Hallo,",
        "Guten Tag,",
        "Sehr geehrte Damen und Herren,",
        "Hallo Ledgerly-Team,",
        "Moin,",
    ),
    sign_offs=("Viele Grüße", "Mit freundlichen Grüßen", "Beste Grüße", "Danke und Gruß"),
    areas={
        "billing": "die Abrechnung unseres Abos",
        "invoices": "die Rechnungsstellung",
        "payments": "die Zahlungsabwicklung",
        "integrations": "die Synchronisierung mit {tool}",
        "account": "die Anmeldung",
        "reports": "die Berichtsfunktion",
        "mobile": "die mobile App",
    },
    area_short={
        "billing": "Abrechnung",
        "invoices": "Rechnungen",
        "payments": "Zahlungen",
        "integrations": "{tool}-Anbindung",
        "account": "Login",
        "reports": "Berichte",
        "mobile": "App",
    },
    bugs=(
        "Seit dem {date} funktioniert {area} nicht mehr richtig.",
        "Seit dem letzten Update zeigt {area} nur noch eine leere Seite an.",
        "Seit heute Morgen ist {area} extrem langsam und praktisch nicht nutzbar.",
    ),
    error_bugs=(
        "Beim Aufrufen erscheint jedes Mal die folgende Fehlermeldung (betroffen ist {area}):",
    ),
    specific_bugs={
        "billing": ("Unsere USt-IdNr. {vat} wird als ungültig abgelehnt, obwohl sie korrekt ist.",),
        "invoices": (
            "Die PDF-Datei zur Rechnung {invoice} ist leer, wenn ich sie herunterlade.",
            "Auf der Rechnung {invoice} wird die Umsatzsteuer mit {pct} % statt 19 % berechnet.",
        ),
        "payments": (
            "Ein Kunde hat {amount} bezahlt, aber die Rechnung {invoice} steht immer noch auf "
            "„offen“.",
        ),
        "integrations": (
            "Die Verbindung zu {tool} bricht alle paar Tage ab und ich muss sie neu autorisieren.",
        ),
        "account": (
            "Der Zwei-Faktor-Code wird nicht akzeptiert, obwohl die Uhrzeit am Handy stimmt.",
        ),
        "reports": (
            "Im CSV-Export der offenen Posten werden Umlaute falsch angezeigt (z. B. „MÃ¼ller“ "
            "statt „Müller“).",
        ),
        "mobile": ("Die App stürzt ab, sobald ich einen Beleg fotografieren will.",),
    },
    disputes=(
        "Uns wurden am {date} zweimal {price} für dasselbe Abo abgebucht. Bitte erstatten Sie "
        "die doppelte Abbuchung.",
        "Ich habe unser Abo am {date} gekündigt, trotzdem wurden diesen Monat wieder {price} "
        "abgebucht.",
        "Der abgebuchte Betrag von {amount} passt nicht zu unserem Tarif. Können Sie das bitte "
        "prüfen?",
    ),
    features={
        "invoices": (
            "Wäre es möglich, Rechnungen im XRechnung-Format zu erstellen? Das würde uns sehr "
            "helfen.",
            "Könnten Sie mehrstufige Mahnungen einbauen? Erinnerung, 1. Mahnung, 2. Mahnung.",
        ),
        "payments": (
            "Uns fehlt wirklich eine Möglichkeit, Zahlungen per SEPA-Lastschrift einzuziehen. "
            "Ist so etwas geplant?",
        ),
        "reports": ("Ein Export im DATEV-Format wäre für unseren Steuerberater enorm hilfreich.",),
    },
    howtos={
        "invoices": (
            "Wie kann ich unsere USt-IdNr. auf den Rechnungen anzeigen lassen?",
            "Kann ich eine bereits versendete Rechnung stornieren?",
        ),
        "billing": ("Wie ändere ich die E-Mail-Adresse für die Abrechnung?",),
        "account": ("Wie füge ich unseren Steuerberater als Benutzer hinzu?",),
        "integrations": (
            "Wie verbinde ich Ledgerly mit {tool}? Die Anleitung im Hilfe-Center ist veraltet.",
        ),
    },
    complaints=(
        "Das ist jetzt meine dritte Anfrage zu diesem Thema und ich habe immer noch keine "
        "Antwort. Inakzeptabel!",
        "Ehrlich gesagt bin ich sehr enttäuscht. Seit einer Woche funktioniert {area} nicht "
        "und niemand meldet sich.",
        "Wenn das bis Freitag nicht gelöst ist, kündigen wir.",
    ),
    praise=(
        "Vielen Dank an {agent} für die schnelle Hilfe gestern - Problem in zehn Minuten gelöst!",
        "Ich wollte nur mal sagen: Die neue Version ist richtig gut geworden. Großes Lob ans "
        "Team 👍",
    ),
    background=(
        "Wir sind ein kleiner Betrieb mit {size} Mitarbeitern und nutzen Ledgerly seit "
        "{since_year}.",
        "Ich kümmere mich bei uns um die Buchhaltung.",
    ),
    followups=(
        "Den Browser-Cache habe ich schon geleert und es auch mit Firefox probiert - ohne Erfolg.",
        "Es ist ziemlich dringend, weil wir am Freitag den Monatsabschluss machen.",
        "Screenshots kann ich gerne nachreichen.",
    ),
    quote_header="Am {date} schrieb {agent} (Ledgerly Support) <support@ledgerly.example>:",
    subjects={
        "bug": ("Problem - {area_s}", "Fehler: {area_s}", "{area_s} funktioniert nicht"),
        "billing_dispute": (
            "Doppelte Abbuchung",
            "Bitte um Erstattung",
            "Falscher Betrag abgebucht",
        ),
        "feature_request": ("Verbesserungsvorschlag", "Feature-Wunsch: {area_s}"),
        "how_to": ("Frage zum Thema {area_s}", "Kurze Frage"),
        "complaint": ("IMMER NOCH NICHT GELÖST", "Beschwerde - {area_s}", "Sehr unzufrieden"),
        "praise": ("Danke!", "Lob an den Support"),
    },
)

SPANISH = LangPack(
    greetings=("Hola,", "Buenos días,", "Buenas tardes,", "Estimado equipo de Ledgerly:"),
    sign_offs=(
        "Saludos,",
        "Un saludo,",
        "Gracias de antemano,",
        "Quedo atento a su respuesta,",
        "Atentamente,",
    ),
    areas={
        "billing": "la facturación de nuestra suscripción",
        "invoices": "el módulo de facturas",
        "payments": "los cobros en línea",
        "integrations": "la integración con {tool}",
        "account": "nuestra cuenta",
        "reports": "los informes",
        "mobile": "la aplicación móvil",
    },
    area_short={
        "billing": "la facturación",
        "invoices": "las facturas",
        "payments": "los cobros",
        "integrations": "la integración con {tool}",
        "account": "mi cuenta",
        "reports": "los informes",
        "mobile": "la app",
    },
    bugs=(
        "Desde el {date} tenemos un problema con {area}.",
        "Desde la última actualización no podemos usar {area}. La página se queda en blanco.",
        "Desde esta mañana todo lo relacionado con {area} va lentísimo.",
    ),
    error_bugs=("Cada vez que intento abrir {area}, aparece el siguiente error:",),
    specific_bugs={
        "invoices": (
            "Cuando descargo el PDF de la factura {invoice}, el archivo sale en blanco.",
            "En la factura {invoice} el IVA se calcula al {pct} % en lugar del 21 %.",
        ),
        "payments": (
            "Un cliente nos pagó {amount} con tarjeta, pero la factura {invoice} sigue "
            "apareciendo como «pendiente».",
        ),
        "integrations": (
            "La conexión con {tool} se cae cada pocos días y tengo que volver a autorizarla.",
        ),
        "account": ("No me llega el correo para restablecer la contraseña.",),
        "mobile": ("La app se cierra sola cuando intento escanear un recibo.",),
    },
    disputes=(
        "El {date} nos cobraron dos veces {price} por la misma suscripción. Por favor, "
        "devuélvannos el cargo duplicado.",
        "Cancelé la suscripción el {date} y aun así este mes nos han cobrado {price}.",
        "El importe cobrado ({amount}) no corresponde a nuestro plan. ¿Pueden revisarlo?",
    ),
    features={
        "invoices": (
            "¿Sería posible emitir facturas en varios idiomas? Tenemos clientes en Francia y "
            "Portugal.",
            "¿Tienen previsto añadir la factura electrónica? La vamos a necesitar pronto.",
            "Nos vendría muy bien poder enviar recordatorios de pago automáticos personalizados.",
        ),
        "mobile": ("¿Podrían añadir el modo oscuro en la app? La uso mucho de noche.",),
    },
    howtos={
        "invoices": (
            "¿Cómo puedo añadir nuestro NIF en las facturas?",
            "¿Se puede anular una factura que ya se envió?",
        ),
        "billing": ("¿Cómo cambio el correo electrónico de facturación?",),
        "account": ("¿Cómo añado a nuestra gestoría como usuario?",),
        "payments": ("¿Cuánto tardan en llegar a nuestra cuenta los pagos con tarjeta?",),
    },
    complaints=(
        "Es la tercera vez que escribo por este tema y sigo sin respuesta. ¡Es inaceptable!",
        "Llevamos una semana sin poder usar {area} y nadie nos da una solución.",
        "Si no lo solucionan antes del viernes, nos cambiamos de programa.",
    ),
    praise=(
        "Muchísimas gracias a {agent} por la ayuda de ayer, ¡problema resuelto en diez minutos!",
        "Solo quería decirles que la nueva versión está genial. ¡Enhorabuena al equipo! 🎉",
    ),
    background=(
        "Somos una pyme de {size} empleados y usamos Ledgerly desde {since_year}.",
        "Llevo la contabilidad de la empresa desde hace un año.",
    ),
    followups=(
        "Ya he borrado la caché del navegador y he probado con otro navegador, sin éxito.",
        "Es bastante urgente porque el cierre de mes es el viernes.",
        "Si hace falta, puedo enviar capturas de pantalla.",
    ),
    quote_header="El {date}, {agent} (Ledgerly Support) <support@ledgerly.example> escribió:",
    subjects={
        "bug": ("Problema con {area_s}", "Error en {area_s}"),
        "billing_dispute": ("Cobro duplicado", "Solicitud de reembolso", "Cargo incorrecto"),
        "feature_request": ("Sugerencia", "Propuesta de mejora"),
        "how_to": ("Consulta sobre {area_s}", "Duda rápida"),
        "complaint": ("¡¡SIGUE SIN FUNCIONAR!!", "Reclamación: {area_s}", "Muy descontento"),
        "praise": ("¡Gracias!", "Enhorabuena por la nueva versión"),
    },
)

PORTUGUESE = LangPack(
    greetings=("Olá,", "Bom dia,", "Boa tarde,", "Prezados,", "Oi, pessoal,"),
    sign_offs=("Obrigado,", "Obrigada,", "Atenciosamente,", "Abraços,", "Fico no aguardo,"),
    areas={
        "billing": "a cobrança da nossa assinatura",
        "invoices": "o módulo de faturas",
        "payments": "os pagamentos online",
        "integrations": "a integração com o {tool}",
        "account": "a nossa conta",
        "reports": "os relatórios",
        "mobile": "o aplicativo",
    },
    area_short={
        "billing": "cobrança",
        "invoices": "faturas",
        "payments": "pagamentos",
        "integrations": "integração {tool}",
        "account": "login",
        "reports": "relatórios",
        "mobile": "aplicativo",
    },
    bugs=(
        "Desde o dia {date} estamos com um problema envolvendo {area}.",
        "Depois da última atualização, não conseguimos mais usar {area}.",
        "Desde hoje de manhã, tudo o que envolve {area} está lentíssimo.",
    ),
    error_bugs=("Toda vez que tento abrir {area}, aparece o erro abaixo:",),
    specific_bugs={
        "invoices": (
            "Quando baixo o PDF da fatura {invoice}, o arquivo vem em branco.",
            "Na fatura {invoice} o imposto está sendo calculado em {pct}% em vez de 5%.",
        ),
        "payments": (
            'Um cliente pagou {amount} via Pix, mas a fatura {invoice} continua como "em aberto".',
        ),
        "integrations": (
            "A conexão com o {tool} cai a cada poucos dias e preciso autorizar de novo.",
        ),
        "account": ("O e-mail de redefinição de senha nunca chega.",),
        "mobile": ("O aplicativo fecha sozinho quando tento fotografar um recibo.",),
    },
    disputes=(
        "No dia {date} fomos cobrados duas vezes no valor de {price} pela mesma assinatura. "
        "Por favor, estornem a cobrança duplicada.",
        "Cancelei a assinatura no dia {date}, mas mesmo assim fomos cobrados {price} este mês.",
        "O valor cobrado ({amount}) não bate com o nosso plano. Podem verificar?",
    ),
    features={
        "invoices": (
            "Seria possível emitir nota fiscal direto pelo Ledgerly? Hoje fazemos isso em outro "
            "sistema.",
        ),
        "payments": ("Seria ótimo poder receber por boleto e Pix direto nas faturas.",),
        "reports": ("Vocês pretendem adicionar relatórios por centro de custo?",),
    },
    howtos={
        "invoices": (
            "Como faço para colocar o CNPJ da empresa nas faturas?",
            "É possível cancelar uma fatura que já foi enviada?",
        ),
        "billing": ("Como altero o e-mail de cobrança?",),
        "account": ("Como adiciono nosso contador como usuário?",),
        "payments": ("Quanto tempo leva para o dinheiro dos pagamentos com cartão cair na conta?",),
    },
    complaints=(
        "É a terceira vez que entro em contato sobre isso e até agora nada. Um absurdo!",
        "Estamos há uma semana sem conseguir usar {area} e ninguém resolve.",
        "Se não for resolvido até sexta, vamos cancelar.",
    ),
    praise=(
        "Muito obrigado pela ajuda de {agent} ontem, resolveu tudo em dez minutos!",
        "Só queria dizer que a nova versão ficou excelente. Parabéns ao time! 🙌",
    ),
    background=(
        "Somos uma empresa pequena, com {size} funcionários, e usamos o Ledgerly desde "
        "{since_year}.",
        "Cuido da parte financeira da empresa.",
    ),
    followups=(
        "Já limpei o cache do navegador e testei em outro navegador, sem sucesso.",
        "É urgente porque o fechamento do mês é na sexta.",
        "Se precisar, posso mandar prints da tela.",
    ),
    quote_header="Em {date}, {agent} (Ledgerly Support) <support@ledgerly.example> escreveu:",
    subjects={
        "bug": ("Problema com {area_s}", "Erro: {area_s}"),
        "billing_dispute": ("Cobrança em duplicidade", "Pedido de estorno", "Valor errado"),
        "feature_request": ("Sugestão de melhoria", "Pedido de funcionalidade: {area_s}"),
        "how_to": ("Dúvida sobre {area_s}", "Dúvida rápida"),
        "complaint": ("AINDA SEM SOLUÇÃO", "Reclamação - {area_s}", "Muito insatisfeito"),
        "praise": ("Obrigado!", "Parabéns pela nova versão"),
    },
)

JAPANESE = LangPack(
    greetings=(
        "Ledgerlyサポート御中",
        "お世話になっております。",
        "いつもお世話になっております。{company}の{last}です。",
    ),
    sign_offs=(
        "よろしくお願いいたします。",
        "ご確認のほど、よろしくお願いいたします。",
        "お手数ですが、ご対応をお願いいたします。",
    ),
    areas={
        "billing": "料金プランの請求",
        "invoices": "請求書",
        "payments": "決済",
        "integrations": "{tool}との連携",
        "account": "アカウント",
        "reports": "レポート",
        "mobile": "モバイルアプリ",
    },
    area_short={
        "billing": "料金プラン",
        "invoices": "請求書",
        "payments": "決済",
        "integrations": "{tool}連携",
        "account": "アカウント",
        "reports": "レポート",
        "mobile": "アプリ",
    },
    bugs=(
        "{date}から{area}の画面が正しく表示されません。",
        "最新のアップデート以降、{area}が動作しなくなりました。",
        "今朝から{area}の動作が非常に遅く、ほとんど使えません。",
    ),
    error_bugs=("{area}を開こうとすると、以下のエラーが表示されます。",),
    specific_bugs={},
    disputes=(
        "{date}に同じ月額料金（{price}）が二重に請求されています。返金をお願いできますでしょうか。",
        "解約済みのはずですが、今月も{price}が引き落とされました。",
    ),
    features={
        "invoices": (
            "インボイス制度に対応した請求書テンプレートがあると助かります。",
            "複数通貨での請求に対応していただけないでしょうか。",
        ),
        "reports": ("部門別のレポートを出せるようにしていただけると助かります。",),
    },
    howtos={
        "invoices": ("請求書に登録番号を表示するにはどうすればよいですか？",),
        "integrations": ("{tool}との連携の設定方法を教えてください。",),
        "account": ("経理担当者をユーザーとして追加するにはどうすればよいですか？",),
    },
    complaints=(
        "何度も問い合わせていますが、まだ回答がありません。至急対応してください。",
        "{area}の不具合が一週間以上続いており、業務に支障が出ています。",
    ),
    praise=(
        "先日はサポートの{agent}さんに迅速にご対応いただき、ありがとうございました。",
        "新しい{area}の機能、とても使いやすいです！🙏",
    ),
    background=("弊社は従業員{size}名の会社で、{since_year}年からLedgerlyを利用しています。",),
    followups=(
        "ブラウザのキャッシュは削除済みです。",
        "スクリーンショットが必要であればお送りします。",
        "月末の締め作業に影響が出ているため、早めのご対応をお願いします。",
    ),
    quote_header="{date} {agent} (Ledgerly Support) <support@ledgerly.example>:",
    subjects={
        "bug": ("{area_s}のエラーについて", "{area_s}が表示されない"),
        "billing_dispute": ("二重請求について", "返金のお願い"),
        "feature_request": ("機能追加のご要望", "{area_s}への要望"),
        "how_to": ("{area_s}の使い方について", "質問です"),
        "complaint": ("【至急】{area_s}の不具合", "対応が遅すぎます"),
        "praise": ("お礼", "ありがとうございました"),
    },
)

CHINESE = LangPack(
    greetings=("您好，", "Ledgerly 客服团队，你们好：", "你好，"),
    sign_offs=("谢谢！", "麻烦尽快处理，谢谢。", "期待您的回复。"),
    areas={
        "billing": "订阅账单",
        "invoices": "发票",
        "payments": "收款",
        "integrations": "与 {tool} 的同步",
        "account": "账户登录",
        "reports": "报表",
        "mobile": "手机应用",
    },
    area_short={
        "billing": "账单",
        "invoices": "发票",
        "payments": "收款",
        "integrations": "{tool}同步",
        "account": "账户",
        "reports": "报表",
        "mobile": "App",
    },
    bugs=(
        "从{date}开始，{area}一直无法正常加载。",
        "更新之后{area}就用不了了，请帮忙看一下。",
        "今天早上开始，{area}变得非常慢，几乎没法用。",
    ),
    error_bugs=("每次打开{area}都会出现下面的错误：",),
    specific_bugs={},
    disputes=(
        "我们在{date}被重复扣款{price}，请退还多扣的部分。",
        "我们已经取消了订阅，但这个月还是被扣了{price}。",
    ),
    features={
        "invoices": ("希望发票能支持多币种。",),
        "reports": ("能不能增加报表批量导出功能？这样对我们的会计很方便。",),
    },
    howtos={
        "invoices": ("请问如何修改发票的默认币种？",),
        "account": ("怎么把我们的会计添加为用户？",),
        "integrations": ("请问怎么连接 {tool}？",),
    },
    complaints=(
        "这个问题已经反馈三次了，到现在还没有解决，非常失望！",
        "{area}已经一个星期不能用了，严重影响我们的业务。",
    ),
    praise=("感谢{agent}的耐心帮助，问题很快就解决了！👍", "新版的{area}非常好用，辛苦了！"),
    background=("我们是一家{size}人的小公司，从{since_year}年开始使用 Ledgerly。",),
    followups=(
        "我已经清除了浏览器缓存，也换了浏览器试过。",
        "如果需要截图，我可以发给你们。",
        "月底要结账，比较着急。",
    ),
    quote_header="{date} {agent} (Ledgerly Support) <support@ledgerly.example> 写道：",
    subjects={
        "bug": ("{area_s}无法使用", "{area_s}报错"),
        "billing_dispute": ("重复扣款", "申请退款"),
        "feature_request": ("功能建议", "关于{area_s}的建议"),
        "how_to": ("{area_s}使用问题", "请教一个问题"),
        "complaint": ("投诉：{area_s}问题一直没解决", "请尽快处理！！"),
        "praise": ("感谢", "谢谢你们的帮助"),
    },
)

KOREAN = LangPack(
    greetings=("안녕하세요,", "안녕하세요. {company}의 {last}입니다.", "Ledgerly 고객지원팀께,"),
    sign_offs=("감사합니다.", "빠른 확인 부탁드립니다.", "답변 기다리겠습니다."),
    areas={
        "billing": "구독 결제",
        "invoices": "청구서",
        "payments": "결제",
        "integrations": "{tool} 연동",
        "account": "계정",
        "reports": "보고서",
        "mobile": "모바일 앱",
    },
    area_short={
        "billing": "구독 결제",
        "invoices": "청구서",
        "payments": "결제",
        "integrations": "{tool} 연동",
        "account": "계정",
        "reports": "보고서",
        "mobile": "앱",
    },
    bugs=(
        "{date}부터 {area} 화면이 제대로 열리지 않습니다.",
        "업데이트 이후 {area} 기능이 작동하지 않습니다.",
        "오늘 아침부터 {area} 속도가 너무 느려서 사용할 수가 없습니다.",
    ),
    error_bugs=("{area} 메뉴에 들어가면 아래와 같은 오류가 나옵니다.",),
    specific_bugs={},
    disputes=(
        "{date}에 같은 요금({price})이 두 번 결제되었습니다. 환불 부탁드립니다.",
        "구독을 해지했는데도 이번 달에 {price}이 결제되었습니다.",
    ),
    features={
        "invoices": ("청구서에서 여러 통화를 지원해 주시면 좋겠습니다.",),
        "reports": ("보고서를 엑셀로 한꺼번에 내보내는 기능이 있으면 좋겠습니다.",),
    },
    howtos={
        "invoices": ("청구서의 기본 통화를 바꾸려면 어떻게 해야 하나요?",),
        "account": ("회계사를 사용자로 추가하는 방법을 알려주세요.",),
        "integrations": ("{tool} 연동은 어떻게 설정하나요?",),
    },
    complaints=(
        "벌써 세 번째 문의입니다. 아직도 해결이 안 됐습니다.",
        "{area} 문제로 일주일째 업무가 마비되었습니다. 빨리 처리해 주세요!",
    ),
    praise=(
        "{agent}님 덕분에 문제를 금방 해결했습니다. 감사합니다! 😊",
        "새로운 {area} 기능이 정말 편리하네요.",
    ),
    background=(
        "저희는 직원 {size}명의 작은 회사이고 {since_year}년부터 Ledgerly를 쓰고 있습니다.",
    ),
    followups=(
        "브라우저 캐시도 삭제해 봤습니다.",
        "필요하시면 스크린샷을 보내드리겠습니다.",
        "월말 정산 때문에 급합니다.",
    ),
    quote_header="{date} {agent} (Ledgerly Support) <support@ledgerly.example> 작성:",
    subjects={
        "bug": ("{area_s} 오류 문의", "{area_s} 관련 문제"),
        "billing_dispute": ("이중 결제 문의", "환불 요청"),
        "feature_request": ("기능 제안", "{area_s} 관련 요청"),
        "how_to": ("{area_s} 사용 방법 문의", "질문 있습니다"),
        "complaint": ("[긴급] {area_s} 문제 해결 요청", "답변이 너무 늦습니다"),
        "praise": ("감사 인사", "도와주셔서 감사합니다"),
    },
)

LANG_PACKS: dict[str, LangPack] = {
    "fr": FRENCH,
    "de": GERMAN,
    "es": SPANISH,
    "pt": PORTUGUESE,
    "ja": JAPANESE,
    "zh": CHINESE,
    "ko": KOREAN,
}


# ---------------------------------------------------------------------------
# Ticket assembly
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A paragraph of a ticket body; code blocks are pasted verbatim."""

    text: str
    code: bool = False
    optional: bool = False  # dropped first when the body gets too long


@dataclass(frozen=True)
class TicketSpec:
    """Everything decided about a ticket before its text is written."""

    kind: str
    area: str
    channel: str
    level: int  # 0 = a single line ... 3 = a long email with history
    lang: str  # the customer's language; phone notes are still written in English
    customer: Customer
    ctx: Ctx


def render_blocks(blocks: list[Block], smart: bool) -> str:
    """Join blocks into a body, dropping optional ones until it fits the size cap."""
    kept = [b for b in blocks if b.text]
    while True:
        body = "\n\n".join(b.text if b.code or not smart else smarten(b.text) for b in kept)
        optional = [i for i, b in enumerate(kept) if b.optional]
        if len(body) <= MAX_BODY_CHARS or not optional:
            return body
        del kept[optional[-1]]


def ticket_times(rng: Rng, count: int) -> list[datetime]:
    """Sorted creation times over the year: weekdays and working hours are busier."""
    hour_weights = [1, 1, 1, 2, 3, 4, 6, 8, 10, 11, 11, 10, 9, 10, 11, 11, 10, 8, 6, 4, 3, 2, 2, 1]
    start = datetime(TICKET_YEAR, 1, 1, tzinfo=UTC)
    days = (datetime(TICKET_YEAR + 1, 1, 1, tzinfo=UTC) - start).days
    times: list[datetime] = []
    while len(times) < count:
        day = start + timedelta(days=rng.randrange(days))
        if day.weekday() >= 5 and not chance(rng, 0.35):
            continue
        hour = rng.choices(range(24), weights=hour_weights)[0]
        times.append(day + timedelta(hours=hour, seconds=rng.randrange(3600)))
    return sorted(times)


def ticket_context(rng: Rng, created: datetime, customer: Customer, lang: str) -> dict[str, str]:
    """Values for every placeholder the phrase banks use; dates are written for ``lang``."""
    person = make_person(rng, customer.locale)
    currency = CURRENCIES[customer.currency]
    earlier = created.date() - timedelta(days=rng.randint(1, 20))
    invoice_n = rng.randint(40, 4800)
    slug_words = ascii_words(customer.name)
    domain = ascii_slug(customer.name)[:18] or "mail"
    return {
        "company": customer.name,
        "first": person.first,
        "first2": pick(rng, FIRST_NAMES[customer.locale]),
        "last": person.last,
        "full": person.full,
        "title": pick(rng, TITLES),
        "email": f"{ascii_slug(person.first) or 'office'}@{domain}.example",
        "agent": pick(rng, AGENTS),
        "tool": pick(rng, TOOLS),
        "client": company_name(rng, customer.locale),
        "date": human_date(rng, earlier, lang),
        "date_iso": earlier.isoformat(),
        "time": f"{rng.randint(6, 21):02d}:{rng.randrange(60):02d}",
        "amount": format_money(rng, currency, rng.uniform(60, 6000)),
        "amount2": format_money(rng, currency, rng.uniform(800, 40000)),
        "price": format_money(rng, currency, pick(rng, PLAN_PRICES_USD), round_price=True),
        "fee": format_money(rng, currency, 0.30),
        "fee_big": format_money(rng, currency, 15, round_price=True),
        "rate": pick(rng, ("1.4", "2.5", "2.9", "3.4")),
        "invoice": customer.invoice_number(invoice_n),
        "invoice2": customer.invoice_number(invoice_n + rng.randint(3, 60)),
        "n": str(rng.randint(3, 40)),
        "m": str(rng.randint(2, 9)),
        "pct": str(pick(rng, (0, 5, 7, 8, 10, 13, 16))),
        "pct2": str(pick(rng, (19, 20, 21, 23, 25))),
        "q": str(rng.randint(1, 4)),
        "since_year": str(rng.randint(2018, 2025)),
        "years": str(rng.randint(2, 7)),
        "months": str(rng.randint(2, 11)),
        "size": str(rng.randint(2, 80)),
        "industry": pick(rng, INDUSTRIES),
        "region": pick(rng, REGIONS),
        "workspace": "-".join(slug_words[:3]) or f"ws-{rng.randrange(10**6):06d}",
        "plan": pick(rng, PLANS),
        "browser": pick(rng, BROWSERS),
        "device": pick(rng, DEVICES),
        "iphone": pick(rng, IPHONES),
        "minor": str(rng.randint(8, 14)),
        "req_id": uuid_like(rng),
        "short_id": f"{rng.getrandbits(32):08X}",
        "hex": f"{rng.getrandbits(96):024x}",
        "hexsig": f"{rng.getrandbits(256):064x}",
        "ts": str(int(created.timestamp()) - rng.randint(60, 86_400)),
        "qb_id": str(rng.randint(100, 9999)),
        "vat": vat_number(rng, customer.locale),
        "phone": f"+1 (555) 01{rng.randrange(100):02d}" if customer.locale == "en" else "",
        "street": f"{rng.randint(2, 240)} {pick(rng, STREETS)}",
        "city": pick(rng, CITIES),
        "site": f"www.{'-'.join(slug_words[:2]) or 'example'}.example",
    }


def signature(rng: Rng, ctx: Ctx, lang: str, *, long: bool = False) -> str:
    if lang in ("ja", "zh", "ko"):
        return fill("{company}\n{full}", ctx)
    if long:
        address = "{full}\n{title}\n{company}\n{street}\n{city}\n"
        return fill(address + ("Tel. {phone}\n" if ctx["phone"] else "") + "{site}", ctx)
    styles = ["{first}", "{full}", "{full}\n{title}\n{company}", "{full} | {title} | {company}"]
    if ctx["phone"]:
        styles.append("{full}\n{title}, {company}\nTel. {phone}")
    return fill(pick(rng, styles), ctx)


def english_issue(rng: Rng, kind: str, area: str) -> Issue:
    if kind == "bug":
        return pick(rng, BUGS[area])
    if kind == "billing_dispute":
        return pick(rng, DISPUTES[area])
    if kind == "feature_request":
        return pick(rng, FEATURES[area])
    if kind == "how_to":
        return pick(rng, HOWTOS[area])
    if kind == "praise":
        specific = AREA_PRAISE.get(area)
        return specific if specific and chance(rng, 0.6) else pick(rng, GENERIC_PRAISE)
    # complaints are a bug or a billing problem, written angrily
    base = DISPUTES.get(area) if chance(rng, 0.3) else None
    return pick(rng, base or BUGS[area])


def wants_error(rng: Rng, issue: Issue, detail: str, p: float) -> bool:
    """Paste the error when the text leads into it (ends with a colon), else sometimes."""
    return issue.error is not None and (detail.endswith(":") or chance(rng, p))


def english_core(rng: Rng, spec: TicketSpec, issue: Issue) -> list[Block]:
    """The paragraphs that state the problem or question."""
    ctx = spec.ctx
    detail = fill(issue.detail, ctx)
    blocks = [Block(detail)]
    if spec.kind == "complaint":
        blocks = [Block(f"{fill(pick(rng, COMPLAINT_OPENERS), ctx)} {detail}")]
    if issue.error and wants_error(rng, issue, detail, 0.5):
        blocks.append(Block(fill(ERRORS[issue.error], ctx), code=True))
    if issue.bullets and spec.level >= 2:
        items = [fill(b, ctx) for b in issue.bullets]
        blocks.append(Block(f"{BULLET_INTROS[spec.kind]}\n{bullet_list(rng, items)}"))
    return blocks


def english_extras(rng: Rng, spec: TicketSpec) -> list[Block]:
    """Background, things tried, environment and impact paragraphs for longer tickets."""
    ctx = spec.ctx
    blocks: list[Block] = []
    if spec.kind in ("bug", "complaint") and chance(rng, 0.5):
        steps = rng.sample(TRIED_STEPS, rng.randint(2, 5))
        blocks.append(Block(f"{pick(rng, TRIED_INTROS)}\n{bullet_list(rng, steps)}"))
    if spec.kind == "bug" and chance(rng, 0.4):
        first = "Device: {device}" if spec.area == "mobile" else "Browser: {browser}"
        env = [fill(s, ctx) for s in (first, "Plan: {plan}", "Time: {time} UTC")]
        blocks.append(Block("Details:\n" + bullet_list(rng, env)))
    if spec.kind not in ("praise", "how_to") and chance(rng, 0.5):
        blocks.append(Block(fill(pick(rng, IMPACT_LINES), ctx)))
    return blocks


def invoice_rows(rng: Rng, spec: TicketSpec) -> Block:
    """A pasted list of affected invoices: numbers, clients, amounts, due dates."""
    customer = spec.customer
    currency = CURRENCIES[customer.currency]
    due = date.fromisoformat(spec.ctx["date_iso"]) - timedelta(days=60)
    number = rng.randint(100, 4000)
    rows = []
    for _ in range(rng.randint(4, 14)):
        number += rng.randint(1, 4)
        due += timedelta(days=rng.randint(0, 5))
        client = company_name(rng, customer.locale)
        amount = format_money(rng, currency, rng.uniform(40, 6000))
        invoice = customer.invoice_number(number)
        rows.append(f"{invoice} - {client} - {amount} - due {due.isoformat()}")
    intro = pick(rng, ("Affected invoices:", "Here's the full list so far:", "Invoices hit:"))
    return Block(f"{intro}\n{bullet_list(rng, rows)}")


def second_question(rng: Rng, spec: TicketSpec) -> Block:
    """An unrelated how-to question tacked onto the end, as people do."""
    other = pick(rng, HOWTOS[pick(rng, AREAS)])
    lead = pick(rng, ("Also, while I have you: ", "Unrelated, but ", "One more thing - "))
    return Block(lead + lower_first(fill(other.detail, spec.ctx)))


def quoted_history(rng: Rng, spec: TicketSpec, header: str, earlier: str) -> str:
    """Support's earlier reply quoted with ">", itself quoting the customer with ">>"."""
    ctx = spec.ctx
    reply = textwrap.fill(pick(rng, SUPPORT_REPLIES[spec.kind]), width=70).splitlines()
    original = textwrap.fill(earlier, width=68).splitlines()
    asked = f"On {ctx['date_iso']}, {ctx['full']} <{ctx['email']}> wrote:"
    lines = [f"Hi {ctx['first']},", "", *reply, "", "Best,", ctx["agent"], "", asked]
    lines += [f"> {line}" for line in original]
    return fill(header, ctx) + "\n" + "\n".join(f"> {line}".rstrip() for line in lines)


EN_QUOTE_HEADER = "On {date}, {agent} from Ledgerly Support <support@ledgerly.example> wrote:"


def english_long_tail(rng: Rng, spec: TicketSpec) -> list[Block]:
    """The extra material that makes a level-3 email long."""
    ctx = spec.ctx
    blocks: list[Block] = []
    if spec.kind in ("bug", "complaint", "billing_dispute"):
        steps = [fill(s, ctx) for s in pick(rng, TIMELINES)]
        blocks.append(Block("Timeline so far:\n" + bullet_list(rng, steps)))
        if spec.area in ("invoices", "payments") and chance(rng, 0.7):
            blocks.append(invoice_rows(rng, spec))
    stories = LONG_STORIES.get(spec.kind, ())
    for story in rng.sample(stories, min(len(stories), rng.randint(1, 3))):
        blocks.append(Block(fill(story, ctx)))
    if spec.kind != "praise" and chance(rng, 0.5):
        blocks.append(second_question(rng, spec))
    return blocks


def english_email(rng: Rng, spec: TicketSpec, issue: Issue) -> list[Block]:
    ctx = spec.ctx
    if spec.level == 0:
        line = upper_first(fill(issue.short, ctx))
        on_phone = spec.channel == "email" and chance(rng, 0.3)
        footer = pick(rng, MOBILE_FOOTERS) if on_phone else ""
        return [Block(line), Block(footer)]
    blocks = [Block(fill(pick(rng, GREETINGS), ctx) if chance(rng, 0.8) else "")]
    if spec.level >= 2 and chance(rng, 0.6):
        blocks.append(Block(fill(pick(rng, CONTEXT_LINES), ctx)))
    blocks += english_core(rng, spec, issue)
    if spec.level >= 2:
        blocks += english_extras(rng, spec)
    if spec.level == 3:
        blocks += english_long_tail(rng, spec)
    blocks.append(Block(english_closing(rng, spec)))
    if spec.channel == "email" and chance(rng, 0.85):
        sig = signature(rng, ctx, "en", long=spec.level == 3 and chance(rng, 0.5))
        blocks.append(Block(f"{pick(rng, SIGN_OFFS)}\n{sig}"))
    if spec.level == 3:
        blocks.append(Block(DISCLAIMER if chance(rng, 0.35) else "", optional=True))
        if spec.kind in SUPPORT_REPLIES and chance(rng, 0.8):
            history = quoted_history(rng, spec, EN_QUOTE_HEADER, fill(issue.detail, ctx))
            blocks.append(Block(history, optional=True))
    return blocks


def english_closing(rng: Rng, spec: TicketSpec) -> str:
    if spec.kind == "complaint":
        text = pick(rng, COMPLAINT_CLOSERS)
        return text + (" " + pick(rng, EMOJI["complaint"]) if chance(rng, 0.2) else "")
    text = fill(pick(rng, ASKS[spec.kind]), spec.ctx)
    if spec.kind == "praise":
        extra = pick(rng, SUGGESTIONS) if chance(rng, 0.3) else pick(rng, EMOJI["praise"])
        text = f"{text} {extra}".strip()
    return text


def web_form(spec: TicketSpec, message: str) -> str:
    """Wrap a message in the key: value header that the website's contact form adds."""
    header = fill("Name: {full}\nCompany: {company}\nEmail: {email}\nPlan: {plan}\n", spec.ctx)
    return f"{header}Topic: {spec.area.capitalize()}\n\nMessage:\n{message}"


def chat_lines(rng: Rng, spec: TicketSpec, issue: Issue) -> list[str]:
    """What the visitor typed, one chat message per line."""
    ctx = spec.ctx
    short = fill(issue.short, ctx)
    lines = [pick(rng, CHAT_OPENERS)] if chance(rng, 0.5) else []
    lines.append(short if chance(rng, 0.6) else upper_first(short))
    if spec.level >= 1:
        detail = fill(issue.detail, ctx)
        lines.append(detail)
        if wants_error(rng, issue, detail, 0.3):
            lines.append(fill(ERRORS[issue.error or ""], ctx))
    if chance(rng, 0.4):
        lines.append(pick(rng, CHAT_CLOSERS))
    return lines


def chat_transcript(rng: Rng, spec: TicketSpec, visitor: list[str], start: datetime) -> str:
    """A timestamped transcript with the bot's and an agent's replies in between."""
    ctx = spec.ctx
    agent = f"{ctx['agent']} (Ledgerly)"
    hello = fill(
        "Hi {first}, this is {agent}. Sorry about that! Could you tell me a bit more?", ctx
    )
    turns = [(ctx["first"], visitor[0])]
    turns.append(("Ledgerly Bot", "Thanks! An agent will be with you in a moment."))
    turns.append((agent, hello))
    turns += [(ctx["first"], line) for line in visitor[1:]]
    turns.append((agent, fill(pick(rng, CHAT_AGENT_WRAPS[spec.kind]), ctx)))
    lines, clock = [], start
    for who, text in turns:
        clock += timedelta(seconds=rng.randint(10, 150))
        lines.append(f"[{clock:%H:%M}] {who}: {text}")
    return "\n".join(lines)


def phone_notes(rng: Rng, spec: TicketSpec, issue: Issue) -> str:
    """An agent's write-up of a phone call (always in English)."""
    ctx = spec.ctx
    lines = [fill("Inbound call from {full} ({company}).", ctx)]
    if spec.lang != "en":
        lines.append(f"Call in {LANGUAGE_NAMES[spec.lang]}; notes translated by agent.")
    if ctx["phone"] and chance(rng, 0.5):
        lines.append(f"Callback number: {ctx['phone']}")
    lines.append(f"Issue: {upper_first(fill(issue.short, ctx))}.")
    if spec.level >= 1:
        detail = fill(issue.detail, ctx)
        lines.append(f"In the customer's words: {detail}")
        if wants_error(rng, issue, detail, 0.3):
            lines.append(fill(ERRORS[issue.error or ""], ctx))
    lines.append(f"Outcome: {pick(rng, PHONE_OUTCOMES[spec.kind])}")
    return "\n".join(lines)


def english_subject(rng: Rng, spec: TicketSpec, issue: Issue) -> str:
    subject = fill(issue.subject, spec.ctx)
    if spec.kind == "complaint":
        subject = pick(rng, ANGRY_SUBJECT_TEMPLATES).format(s=subject, S=subject.upper())
    if spec.channel == "phone":
        return pick(rng, (f"Phone call: {subject}", fill("Call from {full}", spec.ctx), subject))
    if spec.channel == "email":
        roll = rng.random()
        if roll < 0.1:
            return f"Re: {subject}"
        if roll < 0.13:
            return f"Fwd: {subject}"
        if roll < 0.18:
            return subject.lower()
    return subject


def chat_subject(rng: Rng, spec: TicketSpec, lines: list[str]) -> str:
    """Chat tools title a conversation with the visitor's first real message."""
    if chance(rng, 0.2):
        return fill("Chat with {first}", spec.ctx)
    text = next((line for line in lines if line not in CHAT_OPENERS), lines[0])
    text = text.splitlines()[0]
    return text if len(text) <= 60 else text[:59].rstrip() + "…"


def english_ticket(rng: Rng, spec: TicketSpec, created: datetime) -> tuple[str, str]:
    """Subject and body of a ticket written in English."""
    issue = english_issue(rng, spec.kind, spec.area)
    if spec.channel == "phone":
        return english_subject(rng, spec, issue), phone_notes(rng, spec, issue)
    if spec.channel == "chat":
        lines = chat_lines(rng, spec, issue)
        if chance(rng, 0.45):
            return chat_subject(rng, spec, lines), chat_transcript(rng, spec, lines, created)
        body = "\n".join(lines)
        if chance(rng, 0.25):
            body += " " + pick(rng, EMOJI["other"])
        return chat_subject(rng, spec, lines), body
    body = render_blocks(english_email(rng, spec, issue), smart=chance(rng, 0.25))
    if spec.channel == "web" and chance(rng, 0.4):
        body = web_form(spec, body)
    return english_subject(rng, spec, issue), body


def foreign_bug(rng: Rng, pack: LangPack, area: str, ctx: Ctx) -> list[Block]:
    """A bug report line, sometimes followed by the (English) error the app showed."""
    if chance(rng, 0.4):
        errors = [issue.error for issue in BUGS[area] if issue.error]
        error = ERRORS[pick(rng, errors)]
        return [Block(fill(pick(rng, pack.error_bugs), ctx)), Block(fill(error, ctx), code=True)]
    specific = pack.specific_bugs.get(area, ())
    return [Block(fill(pick(rng, specific if specific and chance(rng, 0.5) else pack.bugs), ctx))]


def foreign_core(rng: Rng, pack: LangPack, spec: TicketSpec, ctx: Ctx) -> list[Block]:
    """The paragraphs that state the problem or question, in the pack's language."""
    if spec.kind == "bug":
        return foreign_bug(rng, pack, spec.area, ctx)
    if spec.kind == "complaint":
        opener = Block(fill(pick(rng, pack.complaints), ctx))
        return [opener, *foreign_bug(rng, pack, spec.area, ctx)]
    if spec.kind == "how_to":
        return [Block(fill(pick(rng, pack.howtos[spec.area]), ctx))]
    if spec.kind == "feature_request":
        return [Block(fill(pick(rng, pack.features[spec.area]), ctx))]
    bank = pack.disputes if spec.kind == "billing_dispute" else pack.praise
    return [Block(fill(pick(rng, bank), ctx))]


def foreign_extras(rng: Rng, pack: LangPack, spec: TicketSpec, ctx: Ctx) -> list[Block]:
    texts = [pick(rng, pack.background)] if spec.level >= 2 and chance(rng, 0.6) else []
    if spec.kind in ("bug", "complaint", "billing_dispute"):
        texts += rng.sample(pack.followups, min(len(pack.followups), spec.level))
    return [Block(fill(text, ctx)) for text in texts]


def foreign_ticket(rng: Rng, spec: TicketSpec) -> tuple[str, str]:
    """Subject and body of a ticket written in the customer's own language."""
    pack = LANG_PACKS[spec.lang]
    ctx = dict(spec.ctx)
    ctx["area"] = fill(pack.areas[spec.area], ctx)
    ctx["area_s"] = fill(pack.area_short[spec.area], ctx)
    subject = fill(pick(rng, pack.subjects[spec.kind]), ctx)
    core = foreign_core(rng, pack, spec, ctx)
    if spec.channel == "chat" or spec.level == 0:
        return subject, "\n".join(b.text for b in core)
    blocks = [Block(fill(pick(rng, pack.greetings), ctx)), *core]
    blocks += foreign_extras(rng, pack, spec, ctx)
    if spec.channel == "email":
        blocks.append(Block(f"{pick(rng, pack.sign_offs)}\n{signature(rng, ctx, spec.lang)}"))
    if spec.level == 3 and spec.kind in SUPPORT_REPLIES and chance(rng, 0.7):
        history = quoted_history(rng, spec, pack.quote_header, core[0].text)
        blocks.append(Block(history, optional=True))
    return subject, render_blocks(blocks, smart=False)


def spam_ticket(rng: Rng, ctx: Ctx) -> tuple[str, str]:
    subject, body = pick(rng, SPAM)
    ctx = dict(ctx)
    ctx["bold_offer"] = math_bold("LIMITED OFFER")
    ctx["bold_pitch"] = math_bold("Earn 300% returns in 7 days with our AI crypto bot")
    return fill(subject, ctx), fill(body, ctx)


def math_bold(text: str) -> str:
    """Spell ``text`` in Unicode mathematical bold letters, as spammers like to."""
    out = []
    for ch in text:
        if "A" <= ch <= "Z":
            out.append(chr(0x1D400 + ord(ch) - ord("A")))
        elif "a" <= ch <= "z":
            out.append(chr(0x1D41A + ord(ch) - ord("a")))
        elif "0" <= ch <= "9":
            out.append(chr(0x1D7CE + ord(ch) - ord("0")))
        else:
            out.append(ch)
    return "".join(out)


def choose_area(rng: Rng, kind: str, native_pack: LangPack | None) -> str:
    """The product area; text in another language only covers some areas for some kinds."""
    if native_pack and kind == "how_to":
        return pick(rng, list(native_pack.howtos))
    if native_pack and kind == "feature_request":
        return pick(rng, list(native_pack.features))
    if kind == "billing_dispute":
        return "billing" if native_pack else pick_weighted(rng, {"billing": 70, "payments": 30})
    return pick_weighted(rng, AREA_WEIGHTS)


def choose_spec(rng: Rng, customer: Customer, created: datetime) -> TicketSpec:
    kind = pick_weighted(rng, KIND_WEIGHTS)
    channel = pick_weighted(rng, CHANNEL_WEIGHTS)
    if kind == "spam":
        channel = pick_weighted(rng, {"email": 70, "web": 30})
    level = pick_weighted(rng, LEVEL_WEIGHTS[channel])
    native = customer.locale != "en" and kind != "spam" and chance(rng, NATIVE_LANGUAGE_SHARE)
    lang = customer.locale if native else "en"
    writes_native = native and channel != "phone"
    area = choose_area(rng, kind, LANG_PACKS[lang] if writes_native else None)
    ctx = ticket_context(rng, created, customer, lang if writes_native else "en")
    return TicketSpec(kind, area, channel, level, lang, customer, ctx)


def make_ticket(rng: Rng, number: int, created: datetime, customer: Customer) -> dict[str, str]:
    spec = choose_spec(rng, customer, created)
    sender = customer.name
    if spec.kind == "spam":
        sender = pick(rng, SPAM_SENDERS)
        subject, body = spam_ticket(rng, spec.ctx)
    elif spec.lang != "en" and spec.channel != "phone":
        subject, body = foreign_ticket(rng, spec)
    else:
        subject, body = english_ticket(rng, spec, created)
    return {
        "ticket_id": f"T-{number}",
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "customer": sender,
        "channel": spec.channel,
        "subject": subject,
        "body": body,
        "product_area": spec.area,
    }


def make_tickets() -> list[dict[str, str]]:
    rng = Rng(TICKET_SEED)
    customers = make_customers(rng, N_CUSTOMERS)
    cum_weights, total = [], 0.0
    for rank in range(len(customers)):  # a few customers write in far more often
        total += 1.0 / (rank + 1) ** 0.5
        cum_weights.append(total)
    tickets = []
    for i, created in enumerate(ticket_times(rng, N_TICKETS)):
        customer = rng.choices(customers, cum_weights=cum_weights)[0]
        tickets.append(make_ticket(rng, FIRST_TICKET_NUMBER + i, created, customer))
    return tickets


# ---------------------------------------------------------------------------
# Product reviews
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Product:
    name: str
    noun: str
    quality: str  # "good", "ok" or "poor": shifts the rating distribution
    pos: tuple[str, ...]
    neg: tuple[str, ...]


PRODUCTS = (
    Product(
        "Brewhaus Burr Coffee Grinder",
        "grinder",
        "good",
        (
            "The grind is impressively consistent, from espresso-fine to French press coarse.",
            "Forty grind settings and every one of them is actually usable.",
            "Much quieter than my old blade grinder.",
            "Easy to take apart and brush clean.",
        ),
        (
            "Static makes the grounds cling to everything, so the counter is a mess every morning.",
            "A good few grams stay stuck inside after every grind.",
            "It's loud. Really loud.",
            "The hopper lid cracked within a month.",
        ),
    ),
    Product(
        "Kettlecraft Gooseneck Kettle",
        "kettle",
        "good",
        (
            "The pour is smooth and precise - perfect for pour-over.",
            "It heats up fast and holds 93 °C spot on.",
            "The keep-warm mode is genuinely useful on slow mornings.",
            "Looks lovely on the counter.",
        ),
        (
            "The lid started leaking after a few weeks.",
            "The temperature display is hard to read in daylight.",
            "The handle gets hot near the top.",
            "It beeps loudly and there's no way to turn that off.",
        ),
    ),
    Product(
        "Morningside Pour-Over Set",
        "pour-over set",
        "ok",
        (
            "Makes a clean, bright cup with no sediment.",
            "The glass carafe feels sturdier than it looks.",
            "Comes with enough paper filters to last a couple of months.",
            "A nice little morning ritual, and simple to use.",
        ),
        (
            "The filters it takes are an odd size and hard to find.",
            "The carafe is smaller than I expected - two mugs at most.",
            "The wooden collar went mouldy after a few weeks of washing.",
            "Brewing is slow; the water drains at a trickle.",
        ),
    ),
    Product(
        "CrispWave 5L Air Fryer",
        "air fryer",
        "good",
        (
            "Chips come out crispy in about 15 minutes with barely any oil.",
            "The basket is big enough for a whole chicken.",
            "The non-stick basket is a breeze to clean.",
            "The presets are handy and actually get the timing right.",
        ),
        (
            "The basket coating started peeling after two months.",
            "It smells of plastic every time it heats up, even after a dozen uses.",
            "The fan is noisier than I'd like.",
            "It takes up a lot of counter space.",
        ),
    ),
    Product(
        "Vortexa Personal Blender",
        "blender",
        "ok",
        (
            "Powerful enough to crush ice for smoothies without any trouble.",
            "Blending straight into the bottle and taking it with me is very handy.",
            "Small enough to live in a drawer.",
            "Cleans in seconds with a bit of warm water.",
        ),
        (
            "The motor struggles with anything frozen.",
            "The bottle seal leaked into my bag.",
            "It gets warm after about a minute of blending.",
            "The blade assembly is hard to clean around the rubber ring.",
        ),
    ),
    Product(
        "SliceRight Mandoline Slicer",
        "mandoline",
        "poor",
        (
            "The blades are genuinely sharp.",
            "The thickness settings are handy for gratins.",
            "It folds flat for storage.",
            "Makes quick work of a bag of potatoes.",
        ),
        (
            "The hand guard is flimsy and I nicked my thumb on day one.",
            "Food gets stuck under the blade constantly.",
            "The plastic frame flexes when you push down.",
            "The julienne insert is basically useless.",
        ),
    ),
    Product(
        "Ovenly Cast Iron Skillet 28cm",
        "skillet",
        "good",
        (
            "Holds heat beautifully and gives a great sear on steak.",
            "It came well seasoned and nothing sticks.",
            "Goes from hob to oven without a second thought.",
            "Built to last a lifetime.",
        ),
        (
            "It's far too heavy to lift with one hand.",
            "Rust spots appeared after the first wash.",
            "The handle gets very hot, so keep a cloth handy.",
            "The base isn't quite flat and it wobbles on our glass hob.",
        ),
    ),
    Product(
        "Kestrel ANC-7 Wireless Headphones",
        "headphones",
        "good",
        (
            "Noise cancelling is excellent - the train commute is finally quiet.",
            "The battery easily lasts a week of commuting.",
            "Sound is warm and detailed, with bass that doesn't drown everything out.",
            "Comfortable enough to wear for a full working day.",
        ),
        (
            "They clamp too tightly and give me a headache after an hour.",
            "The touch controls trigger every time I adjust the fit.",
            "The microphone is poor; people say I sound like I'm underwater.",
            "The carry case is bulky.",
        ),
    ),
    Product(
        "Pebblebuds Mini Earbuds",
        "earbuds",
        "poor",
        (
            "Tiny and light, I forget I'm wearing them.",
            "They pair instantly with my phone.",
            "Decent sound for the price.",
            "The case fits in the smallest pocket.",
        ),
        (
            "The left earbud keeps disconnecting.",
            "Battery life is nowhere near the advertised hours.",
            "The case hinge snapped within a month.",
            "They fall out as soon as I start running.",
        ),
    ),
    Product(
        "Driftwave Arc Bluetooth Speaker",
        "speaker",
        "ok",
        (
            "Surprisingly loud for its size; it filled our whole garden.",
            "It survived a drop into the paddling pool.",
            "The battery lasted a full weekend away.",
            "Pairing two of them for stereo works well.",
        ),
        (
            "The bass distorts at anything above half volume.",
            "It switches itself off after ten minutes of silence, which is annoying.",
            "The strap attachment broke off.",
            "There's a noticeable delay when watching videos.",
        ),
    ),
    Product(
        "TrailNest 28L Hiking Backpack",
        "backpack",
        "good",
        (
            "The back panel keeps things cool on long hikes.",
            "The hip belt takes most of the weight off my shoulders.",
            "It survived a downpour with everything inside bone dry.",
            "Loads of pockets without feeling cluttered.",
        ),
        (
            "The bottle pocket is too small for an actual bottle.",
            "One of the shoulder straps started fraying after a month.",
            "The rain cover is an extra purchase.",
            "The chest strap buckle keeps popping open.",
        ),
    ),
    Product(
        'Metrofold Laptop Backpack 15"',
        "backpack",
        "ok",
        (
            "Fits a 15-inch laptop, a jumper and lunch with room to spare.",
            "The padded laptop sleeve feels very protective.",
            "Looks smart enough for the office.",
            "The hidden back pocket is great for my passport.",
        ),
        (
            "It's smaller inside than the photos suggest.",
            "The main zip broke within two months.",
            "Not as waterproof as advertised - my notebook got soaked.",
            "The fabric picks up every bit of lint and dog hair.",
        ),
    ),
    Product(
        "Ridgeback 40L Duffel",
        "duffel",
        "ok",
        (
            "Fits a week's worth of clothes and still counts as cabin luggage.",
            "The hideaway backpack straps are a clever touch.",
            "The material shrugs off scuffs and rain.",
            "Packs down flat when I'm not using it.",
        ),
        (
            "The zip broke on the second trip.",
            "There are no inside pockets at all, so everything ends up at the bottom.",
            "The shoulder strap digs in when it's full.",
            "It smelled strongly of chemicals out of the box.",
        ),
    ),
    Product(
        "Lumora LED Desk Lamp",
        "lamp",
        "good",
        (
            "The light is bright but soft, with no harsh glare on the screen.",
            "Plenty of brightness and colour temperature settings, all of them useful.",
            "The USB port in the base is handy for charging my phone.",
            "Well made, with a sturdy base that doesn't tip.",
        ),
        (
            "It flickers on the lowest brightness setting.",
            "The touch button is over-sensitive and switches on if I brush past.",
            "The arm doesn't reach far enough for a big desk.",
            "It forgets my settings after a power cut.",
        ),
    ),
    Product(
        "Aeris HEPA Air Purifier",
        "purifier",
        "ok",
        (
            "Noticeably fewer allergy symptoms since we started running it at night.",
            "Quiet on the low setting; I barely notice it.",
            "The air quality light is a nice touch.",
            "It clears cooking smells in about half an hour.",
        ),
        (
            "Replacement filters are expensive and hard to find.",
            "It makes a high-pitched whine on the top setting.",
            "The display is far too bright for a bedroom.",
            'The sensor says "good" all the time, even when I burn the toast.',
        ),
    ),
    Product(
        "Snugloft Weighted Blanket 7kg",
        "blanket",
        "good",
        (
            "Honestly, I fall asleep faster with it.",
            "The weight is spread evenly, with no lumps.",
            "The cover is soft and washes well.",
            "Feels like a big hug after a long day.",
        ),
        (
            "Way too warm for summer.",
            "The cover's stitching came undone after the first wash.",
            "The glass beads rustle every time I move.",
            "7 kg is heavier than it sounds - making the bed is a workout.",
        ),
    ),
    Product(
        "Groundwork Yoga Mat 6mm",
        "mat",
        "ok",
        (
            "Good grip even in hot yoga.",
            "Thick enough to protect my knees without feeling unstable.",
            "Light enough to carry to class.",
            "Wipes clean easily.",
        ),
        (
            "It smells strongly of rubber and the smell won't go away.",
            "It gets slippery when sweaty, which defeats the purpose.",
            "The edges curl up and won't lie flat.",
            "It started flaking after a couple of months.",
        ),
    ),
    Product(
        "Hydroloop 1L Insulated Bottle",
        "bottle",
        "good",
        (
            "Keeps water cold for a whole day in a hot car.",
            "Doesn't leak, even thrown sideways into my gym bag.",
            "The wide mouth takes ice cubes easily.",
            "Coffee stays hot for hours.",
        ),
        (
            "The paint chipped after a few days.",
            "The lid is hard to open with cold hands.",
            "It doesn't fit in my car's cup holder.",
            "The straw lid started to smell.",
        ),
    ),
    Product(
        "Stridelite Trail Running Shoes",
        "shoes",
        "poor",
        (
            "Light and cushioned, and my knees feel much better on long runs.",
            "Grippy soles on muddy trails.",
            "Comfortable straight out of the box.",
            "They drain quickly after river crossings.",
        ),
        (
            "Sizing runs small - order half a size up.",
            "The sole started coming away after about 100 km.",
            "They rubbed a blister on my heel on the first run.",
            "The laces keep coming undone.",
        ),
    ),
    Product(
        "Voltgrip 20,000mAh Power Bank",
        "power bank",
        "ok",
        (
            "It charges my phone about four times before it needs charging itself.",
            "Fast charging works with my laptop too.",
            "It can charge two devices at once.",
            "The battery level display is actually accurate.",
        ),
        (
            "It takes forever to recharge.",
            "It gets worryingly hot while charging.",
            "Heavier than I expected.",
            "It stopped charging at full speed after a month.",
        ),
    ),
    Product(
        "Clasp Magnetic Phone Case",
        "case",
        "poor",
        (
            "The magnets are strong and it snaps onto the charger every time.",
            "Slim enough that it doesn't add much bulk.",
            "It survived several drops onto concrete without a scratch on the phone.",
            "Nice grippy texture.",
        ),
        (
            "The corners started yellowing within weeks.",
            "The magnet is too weak to hold in the car mount.",
            "The buttons are hard to press through it.",
            "The lip around the camera is too low to protect it.",
        ),
    ),
    Product(
        "Tangleless Braided USB-C Cable (2 m)",
        "cable",
        "good",
        (
            "The braided cable feels indestructible.",
            "Two metres is the perfect length for charging in bed.",
            "It charges my laptop at full speed.",
            "It really doesn't tangle in my bag.",
        ),
        (
            "It stopped working after a month.",
            "The connector sits a bit loose in my phone.",
            "The braiding started to fray near the plug.",
            "Data transfer is slow - it's really just a charging cable.",
        ),
    ),
)
GENERIC_ASPECTS: dict[str, tuple[str, ...]] = {  # true of any product
    "pos": (
        "It arrived a day early and well packaged.",
        "Great value for the price.",
        "Does exactly what it says on the box.",
        "It looks even better than in the photos.",
    ),
    "neg": (
        "It arrived with a scratch on the side.",
        "The instructions are useless.",
        "It feels cheap for the price.",
        "The packaging was excessive - so much plastic.",
    ),
}

RATING_WEIGHTS: dict[str, tuple[float, ...]] = {  # for ratings 1..5
    "good": (5, 3, 7, 25, 60),
    "ok": (12, 8, 15, 28, 37),
    "poor": (30, 16, 15, 17, 22),
}
OPENERS: dict[int, tuple[str, ...]] = {
    5: (
        "Absolutely love this {noun}.",
        "Best {noun} I've owned.",
        "Exceeded my expectations.",
        "Five stars, no hesitation.",
        "Bought this on a whim and it's become one of my favourite things.",
        "Worth every penny.",
    ),
    4: (
        "Really good {noun}, with one or two small gripes.",
        "Very happy with it overall.",
        "Solid product for the money.",
        "Does what it says, and does it well.",
    ),
    3: (
        "It's okay.",
        "Mixed feelings about this one.",
        "Decent, but not amazing.",
        "Does the job, nothing more.",
        "Fine for the price, I suppose.",
    ),
    2: (
        "Disappointed, to be honest.",
        "Wanted to like this more than I do.",
        "Not great.",
        "Expected a lot more for the price.",
    ),
    1: (
        "Do not buy.",
        "Complete waste of money.",
        "Broke almost straight away.",
        "Terrible. Returning it.",
        "One star because zero isn't an option.",
    ),
}
CLOSERS: dict[str, tuple[str, ...]] = {
    "pos": (
        "Would definitely recommend.",
        "Already bought a second one as a gift.",
        "Highly recommend!",
        "10/10 would buy again.",
        "No regrets.",
    ),
    "mixed": (
        "I'd probably look at other options next time.",
        "If it goes on sale, it's worth it.",
        "Fine if your expectations are modest.",
    ),
    "neg": (
        "Returned it for a refund.",
        "Avoid.",
        "Customer service never replied to my email either.",
        "Save your money and buy something else.",
        "Going back to my old one.",
    ),
}
REVIEW_CONTEXT = (
    "I bought this as a gift for my {relative} and ended up getting one for myself.",
    "I've been using it daily for about {weeks} weeks now.",
    "It replaced an old one that lasted me {years} years.",
    "Ordered it after reading a lot of reviews.",
    "Bought it to replace a cheaper one that broke within a year.",
    "Got it on sale for {price}.",
)
REVIEW_UPDATES: dict[str, tuple[str, ...]] = {
    "pos": (
        "UPDATE after {months} months: still going strong, no complaints.",
        "Edit, {months} months on: I still use it every day and it still looks new.",
        "A few months later and I've bought two more as presents.",
    ),
    "mixed": (
        "Edit: after a few more weeks I've warmed to it a little, but the issues above are "
        "still there.",
        "Update: the company sent a replacement part, which helped a bit.",
    ),
    "neg": (
        "Update: it stopped working completely after {weeks} weeks. Support wanted me to pay "
        "for return shipping.",
        "Update: the replacement they sent has exactly the same problem.",
        "UPDATE: the refund finally came through after {weeks} weeks of emails.",
    ),
}
REVIEW_STORIES: dict[str, tuple[str, ...]] = {
    "pos": (
        "I did a lot of research before buying - read the reviews, watched a couple of videos "
        "and compared it with two other brands at about the same price. In the end I went for "
        "this one and I'm really glad I did.",
        "My old one finally gave up after years of daily use, so I was a bit nervous about "
        "replacing it with something I hadn't tried. No need to worry: this is better in "
        "almost every way.",
    ),
    "mixed": (
        "It's one of those products that looks fine on paper. Nothing is terrible, but "
        "nothing is great either, and for the price I expected a bit more polish.",
        "I've gone back and forth on whether to keep it. Some days it's exactly what I need, "
        "other days the little annoyances add up.",
    ),
    "neg": (
        "I really wanted this to work. I'd read the good reviews, ignored the few bad ones and "
        "paid full price. The problems started within the first week, and the seller was slow "
        "and unhelpful when I got in touch.",
        "I contacted the seller twice. The first reply asked for photos, which I sent, and the "
        "second just repeated the same questions. Three weeks later I'm still waiting.",
    ),
}
REVIEW_TIPS = (
    "Tip: keep the box for the first month in case you need to send it back.",
    "Tip: wait for a sale - the price drops every few weeks.",
    "Tip: register it on the maker's website to get an extra year of warranty.",
    "Tip: read the little manual. A couple of features aren't obvious otherwise.",
)
REVIEW_TITLES: dict[int, tuple[str, ...]] = {
    5: (
        "Love it!",
        "Perfect",
        "Best {noun} ever",
        "Exactly what I needed",
        "Brilliant",
        "So good ❤️",
        "Highly recommend",
    ),
    4: ("Very good", "Great, with a small catch", "Solid {noun}", "Almost perfect", "Good value"),
    3: ("It's fine", "Meh", "Average", "OK for the price", "Some good, some bad"),
    2: ("Disappointing", "Not worth it", "Could be much better", "Meh… wouldn't buy again"),
    1: ("Broke after two weeks", "Waste of money", "AVOID", "Terrible {noun}", "Returned it"),
}
RELATIVES = ("sister", "dad", "partner", "best friend", "mum", "brother-in-law")
REVIEW_EMOJI = {"pos": ("😍", "👍", "🙌", "❤️"), "mixed": ("🤷",), "neg": ("😡", "👎", "🙄")}


@dataclass(frozen=True)
class ReviewLang:
    pos: tuple[str, ...]
    mixed: tuple[str, ...]
    neg: tuple[str, ...]
    titles: Mapping[str, tuple[str, ...]]


REVIEW_LANGS: dict[str, ReviewLang] = {
    "es": ReviewLang(
        pos=(
            "Me encanta, funciona de maravilla.",
            "Muy buena calidad por el precio.",
            "Llegó rápido y bien embalado.",
            "Lo uso todos los días y estoy encantada.",
            "Totalmente recomendable.",
        ),
        mixed=(
            "Está bien, pero esperaba algo más.",
            "Cumple su función, aunque el acabado es mejorable.",
            "Por el precio no está mal.",
        ),
        neg=(
            "Se rompió a las dos semanas.",
            "Muy mala calidad, no lo recomiendo.",
            "No funciona como dice la descripción.",
            "Lo devolví.",
        ),
        titles={
            "pos": ("¡Genial!", "Muy contento", "Excelente compra"),
            "mixed": ("Normalito", "Aceptable"),
            "neg": ("Decepcionante", "No lo compréis"),
        },
    ),
    "fr": ReviewLang(
        pos=(
            "Très satisfaite de cet achat, je recommande !",
            "Excellent rapport qualité-prix.",
            "Facile à utiliser et bien fini.",
            "Je m'en sers tous les jours, impeccable.",
        ),
        mixed=(
            "Correct, sans plus.",
            "Fait le travail, mais les finitions laissent à désirer.",
            "Bien pour le prix, mais pas exceptionnel.",
        ),
        neg=(
            "Tombé en panne au bout de trois semaines.",
            "Qualité médiocre, je ne recommande pas.",
            "Renvoyé dès le lendemain.",
            "Ne correspond pas du tout à la description.",
        ),
        titles={
            "pos": ("Parfait !", "Très bon produit", "Je recommande"),
            "mixed": ("Moyen", "Correct"),
            "neg": ("Déçue", "À éviter"),
        },
    ),
    "de": ReviewLang(
        pos=(
            "Bin absolut begeistert, klare Kaufempfehlung!",
            "Super Qualität für den Preis.",
            "Einfach zu bedienen und sehr gut verarbeitet.",
            "Nutze es täglich und bin sehr zufrieden.",
        ),
        mixed=(
            "Ganz okay, aber nicht überragend.",
            "Erfüllt seinen Zweck, die Verarbeitung könnte besser sein.",
            "Für den Preis in Ordnung.",
        ),
        neg=(
            "Nach zwei Wochen kaputtgegangen.",
            "Schlechte Qualität, würde ich nicht wieder kaufen.",
            "Entspricht überhaupt nicht der Beschreibung.",
            "Geht zurück.",
        ),
        titles={
            "pos": ("Top!", "Sehr zufrieden", "Klare Empfehlung"),
            "mixed": ("Geht so", "Mittelmaß"),
            "neg": ("Enttäuschend", "Finger weg!"),
        },
    ),
    "pt": ReviewLang(
        pos=(
            "Amei! Funciona muito bem.",
            "Ótima qualidade pelo preço.",
            "Chegou rápido e bem embalado.",
            "Uso todo dia e estou muito satisfeito.",
        ),
        mixed=(
            "É razoável, mas esperava mais.",
            "Cumpre o que promete, mas o acabamento podia ser melhor.",
            "Pelo preço, está bom.",
        ),
        neg=(
            "Quebrou depois de duas semanas.",
            "Qualidade péssima, não recomendo.",
            "Não funciona como descrito.",
            "Devolvi.",
        ),
        titles={
            "pos": ("Excelente!", "Muito bom", "Recomendo"),
            "mixed": ("Razoável", "Mais ou menos"),
            "neg": ("Decepcionante", "Não comprem"),
        },
    ),
    "it": ReviewLang(
        pos=(
            "Ottimo prodotto, lo consiglio!",
            "Qualità eccellente per il prezzo.",
            "Facile da usare e ben fatto.",
        ),
        mixed=("Discreto, ma mi aspettavo di più.", "Fa il suo lavoro, niente di speciale."),
        neg=(
            "Si è rotto dopo due settimane.",
            "Pessima qualità, non lo consiglio.",
            "Reso il giorno dopo.",
        ),
        titles={
            "pos": ("Perfetto!", "Consigliato"),
            "mixed": ("Nella media",),
            "neg": ("Deludente",),
        },
    ),
    "ja": ReviewLang(
        pos=(
            "とても使いやすくて気に入っています。",
            "値段の割に品質が良いです。",
            "毎日使っていますが、問題ありません。",
            "買ってよかったです！",
        ),
        mixed=(
            "悪くはないですが、期待したほどではありませんでした。",
            "値段相応だと思います。",
            "使えますが、作りが少し雑です。",
        ),
        neg=(
            "2週間で壊れました。",
            "説明と全然違います。",
            "品質が悪く、おすすめしません。",
            "返品しました。",
        ),
        titles={
            "pos": ("大満足", "おすすめです", "買ってよかった"),
            "mixed": ("普通", "まあまあ"),
            "neg": ("残念", "買わないほうがいい"),
        },
    ),
    "zh": ReviewLang(
        pos=("质量很好，很满意！", "性价比高，推荐购买。", "物流很快，包装也很好。"),
        mixed=("一般般，凑合用。", "还行，但是做工有点粗糙。"),
        neg=("用了两个星期就坏了。", "质量太差，不推荐。", "和描述的完全不一样。"),
        titles={"pos": ("非常满意",), "mixed": ("一般",), "neg": ("失望",)},
    ),
}
REVIEW_LANG_WEIGHTS = {
    "en": 86,
    "es": 3,
    "fr": 2.5,
    "de": 3,
    "pt": 2,
    "ja": 1.5,
    "it": 1,
    "zh": 1,
}
REVIEW_LEVEL_WEIGHTS = {0: 22, 1: 40, 2: 26, 3: 12}
REVIEW_START = date(2024, 1, 1)
REVIEW_DAYS = 731  # through 2025-12-31


def sentiment(rating: int) -> str:
    return "pos" if rating >= 4 else "mixed" if rating == 3 else "neg"


def review_ctx(rng: Rng, product: Product) -> dict[str, str]:
    currency = CURRENCIES[pick(rng, ("USD", "GBP", "EUR"))]
    return {
        "noun": product.noun,
        "relative": pick(rng, RELATIVES),
        "weeks": str(rng.randint(2, 12)),
        "years": str(rng.randint(3, 10)),
        "months": str(rng.randint(2, 14)),
        "price": format_money(rng, currency, rng.randint(15, 180)),
    }


def aspects(rng: Rng, product: Product) -> tuple[list[str], list[str]]:
    """Shuffled good and bad points: the product's own first, then generic ones."""
    own_pos, own_neg = list(product.pos), list(product.neg)
    generic_pos, generic_neg = list(GENERIC_ASPECTS["pos"]), list(GENERIC_ASPECTS["neg"])
    for group in (own_pos, own_neg, generic_pos, generic_neg):
        rng.shuffle(group)
    return own_pos + generic_pos[:1], own_neg + generic_neg[:1]


def english_opinion(rng: Rng, pos: list[str], neg: list[str], rating: int) -> list[str]:
    """Sentences about the product whose tone matches ``rating``."""
    if rating == 5:
        return pos[: rng.randint(1, 3)]
    if rating == 4:
        return [
            *pos[: rng.randint(1, 2)],
            "Only knocking off a star because " + lower_first(neg[0]),
        ]
    if rating == 3:
        but = pick(rng, ("But ", "On the other hand, ", "However, "))
        return [pos[0], but + lower_first(neg[0])]
    if rating == 2:
        return [*neg[: rng.randint(1, 2)], "To be fair, " + lower_first(pos[0])]
    return neg[: rng.randint(1, 3)]


PROS_CONS_COUNTS = {5: (3, 0), 4: (3, 1), 3: (2, 2), 2: (1, 2), 1: (0, 3)}


def pros_and_cons(rng: Rng, pos: list[str], neg: list[str], rating: int) -> str:
    n_pos, n_neg = PROS_CONS_COUNTS[rating]
    pros = [p.rstrip(".") for p in pos[-n_pos:]] if n_pos else ["it arrived on time, I suppose"]
    cons = [c.rstrip(".") for c in neg[-n_neg:]] if n_neg else ["none so far"]
    marker = pick(rng, ("- ", "+ ", "* "))
    return (
        "Pros:\n"
        + "\n".join(marker + p for p in pros)
        + "\n\nCons:\n"
        + "\n".join("- " + c for c in cons)
    )


def review_paragraphs(rng: Rng, product: Product, rating: int, level: int) -> list[str]:
    """One to four paragraphs of review text, longer for higher ``level``."""
    tone, ctx = sentiment(rating), review_ctx(rng, product)
    pos, neg = aspects(rng, product)
    opener = fill(pick(rng, OPENERS[rating]), ctx)
    opinion = english_opinion(rng, pos, neg, rating)
    if level == 0:
        return [pick(rng, (opener, opinion[0]))]
    context = fill(pick(rng, REVIEW_CONTEXT), ctx)
    closer = pick(rng, CLOSERS[tone])
    if level == 1:
        return [" ".join([opener, *opinion])]
    if chance(rng, 0.35):
        paragraphs = [f"{opener} {context}", pros_and_cons(rng, pos, neg, rating), closer]
    else:
        extra = pos[-1] if tone == "pos" else neg[-1]
        paragraphs = [" ".join([opener, *opinion]), f"{context} {extra} {closer}"]
    if level == 3 or chance(rng, 0.3):
        paragraphs.insert(1, pick(rng, REVIEW_STORIES[tone]))
    if level == 3:
        paragraphs.append(fill(pick(rng, REVIEW_UPDATES[tone]), ctx))
        if chance(rng, 0.5):
            paragraphs.append(pick(rng, REVIEW_TIPS))
    return paragraphs


def english_review(rng: Rng, product: Product, rating: int) -> tuple[str, str]:
    tone = sentiment(rating)
    level = pick_weighted(rng, REVIEW_LEVEL_WEIGHTS)
    text = "\n\n".join(review_paragraphs(rng, product, rating, level))
    if chance(rng, 0.08):
        text += " " + pick(rng, REVIEW_EMOJI[tone])
    if chance(rng, 0.15):
        text = smarten(text)
    return pick(rng, REVIEW_TITLES[rating]).format(noun=product.noun), text


def foreign_review(rng: Rng, lang: str, rating: int) -> tuple[str, str]:
    pack, tone = REVIEW_LANGS[lang], sentiment(rating)
    bank: tuple[str, ...] = getattr(pack, tone)
    sentences = rng.sample(bank, rng.randint(1, len(bank)))
    if rating == 4 and chance(rng, 0.5):
        sentences.append(pick(rng, pack.mixed))
    return pick(rng, pack.titles[tone]), " ".join(sentences)


REVIEW_SCHEMA = pa.schema(
    [
        ("review_id", pa.int64()),
        ("product", pa.string()),
        ("rating", pa.int8()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("verified_purchase", pa.bool_()),
        ("reviewed_on", pa.date32()),
    ]
)


def make_review(rng: Rng, review_id: int, reviewed_on: date) -> dict[str, object]:
    product = pick(rng, PRODUCTS)
    rating = rng.choices(range(1, 6), weights=RATING_WEIGHTS[product.quality])[0]
    lang = pick_weighted(rng, REVIEW_LANG_WEIGHTS)
    if lang == "en":
        title, text = english_review(rng, product, rating)
    else:
        title, text = foreign_review(rng, lang, rating)
    return {
        "review_id": review_id,
        "product": product.name,
        "rating": rating,
        "title": title,
        "text": text,
        "verified_purchase": chance(rng, 0.82),
        "reviewed_on": reviewed_on,
    }


def make_reviews() -> pa.Table:
    """Reviews in date order; ids increase with gaps, as in a shared id sequence."""
    rng = Rng(REVIEW_SEED)
    days = sorted(rng.randrange(REVIEW_DAYS) for _ in range(N_REVIEWS))
    rows, review_id = [], 700_000
    for day in days:
        review_id += rng.randint(1, 7)
        rows.append(make_review(rng, review_id, REVIEW_START + timedelta(days=day)))
    return pa.Table.from_pylist(rows, schema=REVIEW_SCHEMA)


# ---------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------


def write_tickets_csv(tickets: list[dict[str, str]], path: Path) -> None:
    """RFC 4180: comma-separated, double quotes doubled, CRLF after every record."""
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=TICKET_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(tickets)


def write_jsonl(rows: list[dict[str, str]], path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_reviews_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="zstd")


def main() -> None:
    tickets = make_tickets()
    write_tickets_csv(tickets, TICKETS_CSV)
    write_jsonl(tickets[:N_JSONL], TICKETS_JSONL)
    write_reviews_parquet(make_reviews(), REVIEWS_PARQUET)
    for path in (TICKETS_CSV, TICKETS_JSONL, REVIEWS_PARQUET):
        print(f"wrote {path.name} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()

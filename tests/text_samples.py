"""Generated pictures of documents and screenshots, for the text tests and bench/text_privacy.py.

Every picture is rendered here with Pillow's bundled scalable font (Pillow >= 10.1), on a
paper-coloured page, then (for a photographed document) pasted in perspective on a table,
lit unevenly, blurred and JPEG-compressed with a phone's EXIF, as a phone camera would
give it. Screenshots are flat PNGs at a phone's screen size with a status bar. The
content (names, numbers) is random but valid where a real one is checked: MRZ check
digits (ICAO 9303) and card numbers (Luhn).

Each sample says what galprof should decide: the kind, a fragment of the reason and
whether the photo is private.
"""

from __future__ import annotations

import io
import random
import string
from dataclasses import dataclass, field

import numpy as np
import piexif
from PIL import Image, ImageDraw, ImageFilter, ImageFont

PAPER = (246, 243, 234)
INK = (28, 28, 34)


@dataclass
class Sample:
    name: str            # file name, with the folder a phone would use
    data: bytes          # the encoded file
    kind: str            # what galprof should decide
    reason: str          # a fragment of the expected reason
    private: bool
    fmt: str = "JPEG"
    meta: dict = field(default_factory=dict)   # what galprof's metadata reader would give

    def image(self) -> Image.Image:
        return Image.open(io.BytesIO(self.data)).convert("RGB")

    def pixels(self) -> np.ndarray:
        return np.asarray(self.image())


def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


# ------------------------------------------------------------------ checked numbers


def mrz_check(text: str) -> str:
    """ICAO 9303 check digit: weights 7, 3, 1 over digits, letters (A=10) and '<' (0)."""
    total = 0
    for i, ch in enumerate(text):
        value = int(ch) if ch.isdigit() else (ord(ch) - 55 if ch.isalpha() else 0)
        total += value * (7, 3, 1)[i % 3]
    return str(total % 10)


def luhn_number(rng: random.Random, prefix: str = "4", length: int = 16) -> str:
    digits = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return digits + str((10 - total % 10) % 10)


def _name(rng: random.Random, n: int = 7) -> str:
    return "".join(rng.choice(string.ascii_uppercase) for _ in range(n))


def _date(rng: random.Random) -> str:
    return f"{rng.randint(50, 99):02d}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"


def td3_mrz(rng: random.Random) -> list[str]:
    """The two 44-character lines of a passport (TD3)."""
    surname, given = _name(rng, 8), _name(rng, 5)
    line1 = f"P<UTO{surname}<<{given}".ljust(44, "<")[:44]
    number = _name(rng, 2) + "".join(rng.choice(string.digits) for _ in range(7))
    birth, expiry = _date(rng), f"{rng.randint(28, 35):02d}{rng.randint(1, 12):02d}15"
    personal = "<" * 14
    body = (number + mrz_check(number) + "UTO" + birth + mrz_check(birth) + rng.choice("MF")
            + expiry + mrz_check(expiry) + personal + mrz_check(personal))
    composite = body[0:10] + body[13:20] + body[21:43]
    return [line1, body + mrz_check(composite)]


def td1_mrz(rng: random.Random) -> list[str]:
    """The three 30-character lines of an identity card (TD1)."""
    number = _name(rng, 3) + "".join(rng.choice(string.digits) for _ in range(6))
    line1 = f"IDUTO{number}{mrz_check(number)}".ljust(30, "<")
    birth, expiry = _date(rng), "320815"
    line2 = (birth + mrz_check(birth) + rng.choice("MF") + expiry + mrz_check(expiry)
             + "UTO").ljust(29, "<")
    line2 += mrz_check(line1[5:30] + line2[0:7] + line2[8:15] + line2[18:29])
    line3 = f"{_name(rng, 7)}<<{_name(rng, 5)}".ljust(30, "<")[:30]
    return [line1, line2, line3]


# ------------------------------------------------------------------ drawing helpers


def _texture(size: tuple[int, int], base, rng: np.random.Generator, noise: float = 6.0,
             grain: int = 0) -> Image.Image:
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    if grain:   # wood-like stripes
        img += (12 * np.sin(x / grain + 3 * np.sin(y / (grain * 7))))[..., None]
    img += rng.normal(0, noise, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _mono(draw: ImageDraw.ImageDraw, xy, text: str, size: int, fill=INK) -> None:
    """Fixed-pitch text (MRZ style) from a proportional font: one cell per character."""
    f, pitch = font(size), size * 0.62
    x, y = xy
    for i, ch in enumerate(text):
        w = draw.textlength(ch, font=f)
        draw.text((x + i * pitch + (pitch - w) / 2, y), ch, font=f, fill=fill)


def _perspective_coeffs(src, dst) -> list[float]:
    """Coefficients mapping output (dst) points to input (src) points, for Image.transform."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return list(np.linalg.solve(np.array(rows, float), np.array(rhs, float)))


def _phone_exif() -> bytes:
    exif = {"0th": {piexif.ImageIFD.Make: b"Google", piexif.ImageIFD.Model: b"Pixel 7"},
            "Exif": {piexif.ExifIFD.FocalLength: (681, 100),
                     piexif.ExifIFD.DateTimeOriginal: b"2024:05:17 10:21:33"}}
    return piexif.dump(exif)


def photograph(page: Image.Image, seed: int, frame=(1600, 1200), fill: float = 0.78,
               blur: float = 1.2, tilt: float = 0.05) -> bytes:
    """The page as a phone photo: on a table, in perspective, unevenly lit, blurred, JPEG."""
    rng = np.random.default_rng(seed)
    W, H = frame
    table = _texture(frame, rng.uniform([120, 80, 50], [170, 120, 80]), rng, 5, grain=9)
    pw, ph = page.size
    scale = fill * min(W / pw, H / ph)
    cw, ch = pw * scale, ph * scale
    x0, y0 = (W - cw) / 2, (H - ch) / 2
    corners = np.array([[x0, y0], [x0 + cw, y0], [x0 + cw, y0 + ch], [x0, y0 + ch]])
    corners += rng.uniform(-tilt, tilt, corners.shape) * [W, H]
    coeffs = _perspective_coeffs([(0, 0), (pw, 0), (pw, ph), (0, ph)], corners.tolist())
    warped = page.convert("RGB").transform(frame, Image.PERSPECTIVE, coeffs, Image.BICUBIC)
    mask = Image.new("L", page.size, 255).transform(frame, Image.PERSPECTIVE, coeffs,
                                                   Image.BILINEAR)
    table.paste(warped, (0, 0), mask)
    img = np.asarray(table).astype(np.float32)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    gx, gy = rng.uniform(-1, 1, 2)
    light = 1.0 - 0.18 * ((gx * (x / W - 0.5) + gy * (y / H - 0.5)) + 0.5)
    img = img * light[..., None] + rng.normal(0, 3, img.shape)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(blur))
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=87, exif=_phone_exif())
    return buf.getvalue()


def _phone_meta(frame=(1600, 1200)) -> dict:
    return {"make": "Google", "model": "Pixel 7", "width": frame[0], "height": frame[1],
            "focal_length": 6.81}


# ------------------------------------------------------------------ documents


def passport_page(seed: int) -> Image.Image:
    rng = random.Random(seed)
    npr = np.random.default_rng(seed)
    W, H = 1250, 880
    page = _texture((W, H), (226, 232, 216), npr, 3)
    d = ImageDraw.Draw(page)
    for k in range(0, H, 9):     # guilloche-like background lines
        d.line([(x, k + 6 * np.sin(x / 40 + k)) for x in range(0, W, 25)], fill=(208, 218, 200))
    d.text((40, 30), "PASSPORT  PASSEPORT  REISEPASS", font=font(38), fill=(60, 40, 90))
    d.text((820, 30), "UTOPIA", font=font(38), fill=(60, 40, 90))
    d.rectangle([40, 110, 330, 500], fill=(190, 190, 196))        # photo area, no face in it
    d.ellipse([110, 170, 260, 360], fill=(170, 170, 178))
    fields = [("Type / Type", "P"), ("Code", "UTO"),
              ("Passport No. / No. du passeport", _name(rng, 2) + str(rng.randint(10**6, 10**7))),
              ("Surname / Nom", _name(rng, 8)), ("Given names / Prenoms", _name(rng, 5)),
              ("Nationality / Nationalite", "UTOPIAN"),
              ("Date of birth / Date de naissance", f"{rng.randint(1, 28):02d} AUG 1974"),
              ("Sex / Sexe", rng.choice("MF")), ("Date of expiry / Date d'expiration", "15 APR 2032")]
    y = 110
    for label, value in fields:
        d.text((370, y), label, font=font(20), fill=(90, 90, 110))
        d.text((370, y + 22), value, font=font(30), fill=INK)
        y += 58
    for i, line in enumerate(td3_mrz(rng)):
        _mono(d, (40, 700 + i * 62), line, 42)
    return page


def id_card_back(seed: int) -> Image.Image:
    rng = random.Random(seed)
    W, H = 1070, 675
    card = _texture((W, H), (214, 226, 236), np.random.default_rng(seed), 3)
    d = ImageDraw.Draw(card)
    d.text((40, 30), "IDENTITY CARD / CARTE D'IDENTITE", font=font(34), fill=(40, 60, 110))
    d.text((40, 90), f"Address: {rng.randint(1, 99)} {_name(rng, 6).title()} Street", font=font(28),
           fill=INK)
    d.text((40, 135), f"Height: 1{rng.randint(50, 95)} cm   Eyes: BRN", font=font(28), fill=INK)
    for i, line in enumerate(td1_mrz(rng)):
        _mono(d, (60, 420 + i * 72), line, 50)
    return card


def bank_card(seed: int) -> Image.Image:
    rng = random.Random(seed)
    W, H = 1070, 675
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    base = np.stack([20 + 40 * x / W, 50 + 30 * y / H, 120 + 80 * x / W], -1)
    card = Image.fromarray(base.astype(np.uint8))
    d = ImageDraw.Draw(card)
    d.rounded_rectangle([90, 230, 230, 330], 14, fill=(212, 180, 90))     # chip
    d.text((760, 40), "VISA", font=font(80), fill=(250, 250, 250))
    d.text((90, 60), "UTOPIA BANK", font=font(44), fill=(235, 235, 240))
    number = luhn_number(rng)
    groups = " ".join(number[i:i + 4] for i in range(0, 16, 4))
    d.text((92, 402), groups, font=font(78), fill=(40, 40, 50))        # embossed shadow
    d.text((90, 400), groups, font=font(78), fill=(240, 240, 235))
    d.text((90, 510), "VALID THRU", font=font(22), fill=(230, 230, 230))
    d.text((240, 500), f"{rng.randint(1, 12):02d}/{rng.randint(27, 31)}", font=font(40),
           fill=(240, 240, 235))
    d.text((90, 570), f"{_name(rng, 1)} {_name(rng, 7)}", font=font(44), fill=(240, 240, 235))
    return card


def receipt(seed: int) -> Image.Image:
    rng = random.Random(seed)
    items = ["MILK 1L", "BREAD", "APPLES", "COFFEE BEANS", "BUTTER", "EGGS 10", "TOMATOES",
             "PASTA", "CHEESE", "ORANGE JUICE", "YOGURT", "RICE 1KG", "OLIVE OIL"]
    W, H = 640, 1500
    page = _texture((W, H), (250, 250, 246), np.random.default_rng(seed), 2)
    d = ImageDraw.Draw(page)
    d.text((W / 2, 40), "CORNER MARKET", font=font(44), fill=INK, anchor="mt")
    d.text((W / 2, 100), f"{rng.randint(1, 200)} High Street", font=font(26), fill=INK, anchor="mt")
    d.text((W / 2, 135), "2024-05-17  10:21", font=font(26), fill=INK, anchor="mt")
    y, total = 210, 0.0
    for item in rng.sample(items, 10):
        price = rng.randint(49, 899) / 100
        total += price
        d.text((40, y), item, font=font(30), fill=INK)
        d.text((W - 40, y), f"{price:.2f}", font=font(30), fill=INK, anchor="ra")
        y += 52
    tax = round(total * 0.07, 2)
    for label, value in (("SUBTOTAL", total), ("TAX 7%", tax), ("TOTAL", total + tax),
                         ("VISA", total + tax), ("CHANGE", 0.0)):
        y += 10
        d.text((40, y), label, font=font(34), fill=INK)
        d.text((W - 40, y), f"{value:.2f}", font=font(34), fill=INK, anchor="ra")
        y += 50
    d.text((W / 2, y + 40), "THANK YOU FOR SHOPPING", font=font(28), fill=INK, anchor="mt")
    return page


WORDS = ("the of and to in is that for it as with was on be by this are from at or an have "
         "not which but had they his her were been has their more one all would there will "
         "about if so what when who can said also into some could time them these two may "
         "first then do any like my now over such our man me even most made after also did "
         "many before must through back years where much your way well down should because "
         "each just those people how too little state good very make world still own see "
         "men work long get here between both life being under never day same another know "
         "while last might us great old year off come since against go came right used take "
         "three").split()


def _sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def letter(seed: int) -> Image.Image:
    rng = random.Random(seed)
    W, H = 1240, 1754
    page = _texture((W, H), PAPER, np.random.default_rng(seed), 2)
    d = ImageDraw.Draw(page)
    y = 100
    for line in (f"{_name(rng, 6).title()} {_name(rng, 8).title()}",
                 f"{rng.randint(1, 99)} {_name(rng, 7).title()} Road",
                 f"{rng.randint(10000, 99999)} {_name(rng, 6).title()}"):
        d.text((110, y), line, font=font(30), fill=INK)
        y += 42
    d.text((W - 110, 320), "17 May 2024", font=font(30), fill=INK, anchor="ra")
    d.text((110, 420), f"Dear Ms {_name(rng, 7).title()},", font=font(32), fill=INK)
    y = 490
    for _ in range(4):               # paragraphs of lines filling the text width
        for _ in range(rng.randint(4, 6)):
            text = ""
            while True:
                word = rng.choice(WORDS)
                if d.textlength(text + " " + word, font=font(30)) > W - 240:
                    break
                text = (text + " " + word).strip()
            d.text((110, y), text, font=font(30), fill=INK)
            y += 44
        y += 30
    d.text((110, y + 20), "Yours sincerely,", font=font(30), fill=INK)
    return page


def boarding_pass(seed: int) -> Image.Image:
    rng = random.Random(seed)
    W, H = 1400, 600
    page = _texture((W, H), (252, 252, 250), np.random.default_rng(seed), 2)
    d = ImageDraw.Draw(page)
    d.rectangle([0, 0, W, 90], fill=(20, 60, 140))
    d.text((30, 20), "BOARDING PASS", font=font(48), fill=(255, 255, 255))
    d.text((900, 28), "UTOPIA AIR", font=font(40), fill=(255, 255, 255))
    rows = [("PASSENGER", f"{_name(rng, 7)}/{_name(rng, 5)}"), ("FROM", "ZENITH ZNT"),
            ("TO", "NADIR NDR"), ("FLIGHT", f"UA {rng.randint(100, 999)}"),
            ("GATE", f"B{rng.randint(1, 40)}"), ("SEAT", f"{rng.randint(1, 40)}C"),
            ("BOARDING TIME", "10:45")]
    for i, (label, value) in enumerate(rows):
        x, y = 40 + (i % 3) * 440, 130 + (i // 3) * 140
        d.text((x, y), label, font=font(26), fill=(90, 90, 100))
        d.text((x, y + 34), value, font=font(44), fill=INK)
    for k in range(60):     # a barcode
        x = 40 + k * 9
        d.rectangle([x, 520, x + rng.choice((2, 4, 6)), 585], fill=INK)
    return page


def menu(seed: int) -> Image.Image:
    rng = random.Random(seed)
    dishes = ["Tomato soup", "Green salad", "Grilled salmon", "Pasta carbonara", "Steak frites",
              "Mushroom risotto", "Chicken curry", "Apple pie", "Chocolate mousse", "Ice cream"]
    W, H = 900, 1300
    page = _texture((W, H), (250, 244, 228), np.random.default_rng(seed), 2)
    d = ImageDraw.Draw(page)
    d.text((W / 2, 60), "MENU", font=font(80), fill=(110, 30, 30), anchor="mt")
    y = 200
    for section, names in (("STARTERS", dishes[:3]), ("MAINS", dishes[3:7]),
                           ("DESSERTS", dishes[7:])):
        d.text((80, y), section, font=font(40), fill=(110, 30, 30))
        y += 70
        for name in names:
            d.text((80, y), name, font=font(34), fill=INK)
            d.text((W - 80, y), f"{rng.randint(5, 29)}.{rng.choice(['00', '50', '90'])}",
                   font=font(34), fill=INK, anchor="ra")
            y += 58
        y += 30
    return page


# ------------------------------------------------------------------ pictures with incidental text


def _camera(img: Image.Image, rng: np.random.Generator, blur: float) -> bytes:
    """Sensor noise, lens blur and the phone's JPEG with EXIF."""
    pixels = np.asarray(img).astype(np.float32) + rng.normal(0, 4, (img.height, img.width, 3))
    out = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(blur))
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=87, exif=_phone_exif())
    return buf.getvalue()


def street_sign(seed: int) -> bytes:
    """A shop sign above a door, photographed: big letters, one or two lines, no document."""
    rng = np.random.default_rng(seed)
    W, H = 1600, 1200
    img = _texture((W, H), (150, 140, 130), rng, 8, grain=0)
    d = ImageDraw.Draw(img)
    d.rectangle([0, int(H * 0.6), W, H], fill=(90, 90, 95))              # pavement
    d.rectangle([300, 200, 1300, 420], fill=(30, 70, 40))               # the sign board
    d.text((800, 310), "BAKERY", font=font(150), fill=(240, 220, 160), anchor="mm")
    d.rectangle([600, 480, 1000, 980], fill=(60, 40, 30))               # a door
    d.text((800, 440), "OPEN 7 - 19", font=font(34), fill=(20, 20, 20), anchor="mm")
    return _camera(img, rng, 1.0)


def tshirt(seed: int) -> bytes:
    """A printed T-shirt on a hanger: a slogan in two lines on fabric."""
    rng = np.random.default_rng(seed)
    W, H = 1200, 1600
    img = _texture((W, H), (200, 205, 210), rng, 5)
    d = ImageDraw.Draw(img)
    d.polygon([(300, 200), (900, 200), (1150, 450), (1000, 560), (920, 480), (920, 1400),
               (280, 1400), (280, 480), (200, 560), (50, 450)], fill=(180, 30, 40))
    d.text((600, 700), "NEW YORK", font=font(120), fill=(250, 250, 250), anchor="mm")
    d.text((600, 850), "CITY", font=font(120), fill=(250, 250, 250), anchor="mm")
    return _camera(img, rng, 1.5)


# ------------------------------------------------------------------ screenshots


def _status_bar(d: ImageDraw.ImageDraw, W: int, height: int, fg, bg) -> None:
    d.rectangle([0, 0, W, height], fill=bg)
    d.text((int(W * 0.06), height // 2), "12:34", font=font(int(height * 0.45)), fill=fg,
           anchor="lm")
    x = W - int(W * 0.06)
    d.rectangle([x - 60, height // 2 - 14, x, height // 2 + 14], outline=fg, width=3)  # battery
    d.rectangle([x - 56, height // 2 - 10, x - 16, height // 2 + 10], fill=fg)
    for k in range(4):                                                         # signal bars
        d.rectangle([x - 140 + k * 16, height // 2 + 12 - k * 8, x - 130 + k * 16,
                     height // 2 + 14], fill=fg)


def chat_screenshot(seed: int, size=(1080, 2340)) -> bytes:
    """A messaging app: status bar, title bar, bubbles on both sides, input and navigation bars."""
    rng = random.Random(seed)
    W, H = size
    img = Image.new("RGB", size, (236, 229, 221))
    d = ImageDraw.Draw(img)
    _status_bar(d, W, 80, (255, 255, 255), (7, 94, 84))
    d.rectangle([0, 80, W, 240], fill=(7, 94, 84))
    d.ellipse([40, 110, 140, 210], fill=(190, 200, 200))
    d.text((170, 160), f"{_name(rng, 5).title()} {_name(rng, 7).title()}", font=font(48),
           fill=(255, 255, 255), anchor="lm")
    y = 300
    mine = False
    while y < H - 420:
        lines = [_sentence(rng, rng.randint(3, 5)) for _ in range(rng.randint(1, 3))]
        f = font(40)
        width = max(d.textlength(t, font=f) for t in lines) + 60
        height = 56 * len(lines) + 70
        x0 = W - 40 - width if mine else 40
        d.rounded_rectangle([x0, y, x0 + width, y + height], 24,
                            fill=(220, 248, 198) if mine else (255, 255, 255))
        for i, t in enumerate(lines):
            d.text((x0 + 30, y + 24 + 56 * i), t, font=f, fill=(20, 20, 20))
        d.text((x0 + width - 24, y + height - 14), f"12:{rng.randint(10, 59)}", font=font(26),
               fill=(120, 120, 120), anchor="rb")
        y += height + 36
        mine = not mine if rng.random() < 0.8 else mine
    d.rounded_rectangle([30, H - 300, W - 170, H - 180], 60, fill=(255, 255, 255))
    d.text((90, H - 240), "Message", font=font(40), fill=(150, 150, 150), anchor="lm")
    d.ellipse([W - 150, H - 300, W - 30, H - 180], fill=(7, 94, 84))
    d.rectangle([0, H - 130, W, H], fill=(250, 250, 250))
    d.rounded_rectangle([W / 2 - 140, H - 70, W / 2 + 140, H - 58], 6, fill=(60, 60, 60))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def bank_app_screenshot(seed: int, size=(1170, 2532)) -> bytes:
    """A banking app (iPhone size): balance, a list of transfers, a tab bar."""
    rng = random.Random(seed)
    W, H = size
    img = Image.new("RGB", size, (248, 248, 250))
    d = ImageDraw.Draw(img)
    _status_bar(d, W, 130, (0, 0, 0), (248, 248, 250))
    d.text((60, 200), "Accounts", font=font(80), fill=(10, 10, 10))
    d.rounded_rectangle([50, 340, W - 50, 700], 40, fill=(30, 90, 200))
    d.text((110, 420), "Current account", font=font(48), fill=(255, 255, 255))
    d.text((110, 520), f"EUR {rng.randint(100, 9999)}.{rng.randint(10, 99)}", font=font(90),
           fill=(255, 255, 255))
    y = 780
    for _ in range(9):
        d.text((60, y), f"{_name(rng, 6).title()} {_name(rng, 6).title()}", font=font(46),
               fill=(20, 20, 20))
        d.text((60, y + 60), "Transfer  17 May", font=font(34), fill=(130, 130, 130))
        d.text((W - 60, y + 20), f"-{rng.randint(5, 500)}.{rng.randint(10, 99)}", font=font(46),
               fill=(20, 20, 20), anchor="ra")
        d.line([60, y + 140, W - 60, y + 140], fill=(225, 225, 230), width=2)
        y += 165
    d.rectangle([0, H - 250, W, H], fill=(255, 255, 255))
    for k, tab in enumerate(("Home", "Pay", "Cards", "More")):
        d.text(((k + 0.5) * W / 4, H - 150), tab, font=font(34), fill=(90, 90, 90), anchor="mm")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def desktop_screenshot(seed: int, size=(1920, 1080)) -> bytes:
    """A desktop: a window with a text editor over a flat wallpaper, a task bar."""
    rng = random.Random(seed)
    W, H = size
    img = Image.new("RGB", size, (40, 70, 110))
    d = ImageDraw.Draw(img)
    d.rectangle([200, 80, 1700, 960], fill=(255, 255, 255))
    d.rectangle([200, 80, 1700, 130], fill=(225, 225, 228))
    d.text((230, 105), "notes.txt - Editor", font=font(26), fill=(20, 20, 20), anchor="lm")
    y = 160
    while y < 920:
        d.text((240, y), _sentence(rng, rng.randint(6, 12)), font=font(26), fill=(20, 20, 20))
        y += 38
    d.rectangle([0, H - 48, W, H], fill=(30, 30, 34))
    d.text((W - 100, H - 24), "12:34", font=font(22), fill=(240, 240, 240), anchor="mm")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _screen_meta(size) -> dict:
    return {"make": None, "model": None, "width": size[0], "height": size[1]}


def generated_set(seed: int = 1) -> list[Sample]:
    """The generated evaluation set: documents, screenshots and incidental-text negatives."""
    frame = (1600, 1200)
    tall = (1200, 1600)
    out = [
        Sample("DCIM/Camera/IMG_20240517_102101.jpg", photograph(passport_page(seed), seed),
               "id_document", "passport machine-readable zone", True, meta=_phone_meta(frame)),
        Sample("DCIM/Camera/IMG_20240517_102102.jpg",
               photograph(id_card_back(seed), seed + 1, fill=0.7), "id_document",
               "machine-readable zone", True, meta=_phone_meta(frame)),
        Sample("DCIM/Camera/IMG_20240517_102103.jpg",
               photograph(bank_card(seed), seed + 2, fill=0.7), "bank_card",
               "bank card number", True, meta=_phone_meta(frame)),
        Sample("DCIM/Camera/IMG_20240517_102104.jpg",
               photograph(receipt(seed), seed + 3, frame=tall, fill=0.9, tilt=0.03), "receipt",
               "receipt", True, meta=_phone_meta(tall)),
        Sample("DCIM/Camera/IMG_20240517_102105.jpg",
               photograph(letter(seed), seed + 4, frame=tall, fill=0.92, tilt=0.03), "document",
               "document", True, meta=_phone_meta(tall)),
        Sample("DCIM/Camera/IMG_20240517_102106.jpg",
               photograph(boarding_pass(seed), seed + 5, fill=0.85), "document",
               "boarding pass", True, meta=_phone_meta(frame)),
        Sample("DCIM/Screenshots/Screenshot_20240517-102107_Messages.png",
               chat_screenshot(seed), "chat_screenshot", "screenshot", True, fmt="PNG",
               meta=_screen_meta((1080, 2340))),
        Sample("DCIM/Camera/IMG_0421.PNG", bank_app_screenshot(seed), "screenshot",
               "screenshot", True, fmt="PNG", meta=_screen_meta((1170, 2532))),
        Sample("Pictures/Screenshots/Screenshot from 2024-05-17 10-21-09.png",
               desktop_screenshot(seed), "screenshot", "screenshot", True, fmt="PNG",
               meta=_screen_meta((1920, 1080))),
        Sample("DCIM/Camera/IMG_20240517_102110.jpg",
               photograph(menu(seed), seed + 6, frame=tall, fill=0.85, tilt=0.03),
               "incidental_text", "menu", False, meta=_phone_meta(tall)),
        Sample("DCIM/Camera/IMG_20240517_102111.jpg", street_sign(seed), "incidental_text",
               "", False, meta=_phone_meta(frame)),
        # The classifier calls it a jersey, not a text cue: the detector does not run.
        Sample("DCIM/Camera/IMG_20240517_102112.jpg", tshirt(seed), "none", "",
               False, meta=_phone_meta(tall)),
    ]
    return out

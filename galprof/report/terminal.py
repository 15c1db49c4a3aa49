"""The profile as a terminal summary (rich): the same picture as the HTML report, in text."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

BAR_WIDTH = 30
TOP_INTERESTS = 10
TOP_PLACES = 10
TOP_PEOPLE = 12


def _bar(value: float, top: float, style: str = "cyan") -> Text:
    cells = 0 if top <= 0 else value / top * BAR_WIDTH
    full = int(cells)
    text = "█" * full + ("▌" if cells - full >= 0.5 else "")
    return Text(text or ("▏" if value else ""), style=style)


def _bars(title: str, rows: list[tuple[str, float, str]], style: str = "cyan") -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(justify="right", no_wrap=True, max_width=32)
    table.add_column(no_wrap=True)
    table.add_column(justify="right", style="dim")
    top = max((v for _, v, _ in rows), default=0)
    for label, value, note in rows:
        table.add_row(label, _bar(value, top, style), note)
    return table


def render_summary(profile: dict, console: Console | None = None) -> None:
    """Print groups, top interests, top places, demography, people and relations."""
    console = console or Console()
    g = profile.get("gallery") or {}
    console.print(Text(f"{g.get('photos', 0)} photos, {g.get('videos', 0)} videos"
                       + (f", {g['failed']} unreadable" if g.get("failed") else "")
                       + (f", {g['documents']} documents" if g.get("documents") else "")
                       + (f", {g['screenshots']} screenshots" if g.get("screenshots") else ""),
                       style="bold"))

    groups = sorted(profile.get("categories") or [], key=lambda c: -int(c.get("media", 0)))
    if groups:
        console.print(_bars("Interests by group", [
            (c["group"], c.get("media", 0),
             f"{c.get('media', 0)}" + (f" ({c['share']:.0%})" if c.get("share") is not None
                                       else "")) for c in groups]))
    interests = (profile.get("interests") or [])[:TOP_INTERESTS]
    if interests:
        console.print(_bars("Top interests", [
            (f"{i['category']} ({i.get('group', '')})", float(i.get("score", 0)),
             f"{i.get('score', 0):.2f}") for i in interests], style="green"))

    places = (profile.get("locations") or [])[:TOP_PLACES]
    if places:
        console.print(_bars("Top places", [
            (f"{p['city']}, {p['country']}" if p.get("city")
             else f"{p.get('country')} (outside towns)",
             p.get("media", 0), f"{p.get('media', 0)}") for p in places], style="magenta"))

    demo = profile.get("demography") or {}
    bins = demo.get("bins") or []
    if bins and (any(demo.get("male") or []) or any(demo.get("female") or [])):
        male, female = demo.get("male") or [], demo.get("female") or []
        table = Table(title="Demography (people)", title_justify="left", show_header=False,
                      box=None, pad_edge=False)
        table.add_column(justify="right", no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(justify="right", style="dim")
        top = max((m + f for m, f in zip(male, female)), default=0)
        for label, m, f in zip(bins, male, female):
            bar = Text()
            bar.append_text(_bar(m, top, "blue"))
            bar.append_text(_bar(f, top, "red"))
            table.add_row(label, bar, f"{m} M  {f} F")
        console.print(table)

    people = sorted(profile.get("people") or [],
                    key=lambda p: -(int(p.get("photos") or 0) + int(p.get("videos") or 0)))
    if people:
        owner_id = (profile.get("owner") or {}).get("person_id")
        relations = {r.get("person_id"): r.get("relation")
                     for r in profile.get("relations") or []}
        table = Table(title="People", title_justify="left")
        for col in ("id", "who", "gender", "born", "photos", "videos", "seen"):
            table.add_column(col, justify="right" if col in ("id", "photos", "videos") else "left")
        for p in people[:TOP_PEOPLE]:
            role = "owner" if p.get("id") == owner_id else (p.get("role")
                                                           or relations.get(p.get("id")))
            who = " ".join(x for x in (p.get("name"), f"[{role}]" if role else None) if x)
            seen = " – ".join(x for x in (p.get("first"), p.get("last")) if x)
            table.add_row(str(p.get("id")), Text(who, style="bold yellow" if role == "owner"
                                                 else ""),
                          p.get("gender") or "", str(p.get("birth_year") or ""),
                          str(p.get("photos") or 0), str(p.get("videos") or 0), seen)
        console.print(table)

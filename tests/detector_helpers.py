"""Event builders for detector tests: contract-v1 dicts pushed through ``parse_event`` into
a real :class:`Detector` with the real .mmdb fixtures (see fixtures_geo.GEO_CASES).

Places used by the tests (all answered by the fixture databases):
  HOME   81.2.69.x   GB London   AS20712      HOME2  81.2.70.x  same AS and city, other /24
  SE     89.160.20.x SE Linköping AS29518     CN     175.16.199.x  CN Changchun AS4837
  US     216.160.83.x US Milton AS209         VPN    67.43.156.x  BT Thimphu AS35908
  MOBILE 82.132.217.x GB London AS12576 (EE)  MOBILE6 2a01:4c8:1000::/40 the same carrier, IPv6
  HOME6  2001:8b0:1::/48 the HOME ISP (AS20712) over IPv6
"""
from __future__ import annotations

import itertools
from datetime import datetime, timezone

from straycode.detector.alerts import Alert, ScoreRecord
from straycode.detector.contract import parse_event
from straycode.detector import engine, scoring
from straycode.detector.engine import Detector
from straycode.detector.enrich import Enricher
from straycode.settings import detector_settings, load_settings

T0 = datetime(2026, 1, 5, tzinfo=timezone.utc).timestamp()   # a Monday, 00:00 UTC
DAY = 86400
HOUR = 3600

HOME, HOME2, SE, CN, US, VPN = ("81.2.69.10", "81.2.70.20", "89.160.20.5", "175.16.199.7",
                                "216.160.83.9", "67.43.156.9")
MOBILE, MOBILE6, HOME6 = "82.132.217.40", "2a01:4c8:1010:7::5", "2001:8b0:1:0:a1b2::7"
UA_WIN = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/126.0.0.0 Safari/537.36")
UA_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
UA_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
             "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
UA_IPAD = ("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
           "Version/17.5 Mobile/15E148 Safari/604.1")
UA_ANDROID = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/126.0.0.0 Mobile Safari/537.36")


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def config(env: dict | None = None, **detector_over) -> dict:
    cfg = detector_settings(load_settings(env=env or {}))
    cfg.update(detector_over)
    return cfg


def make_detector(geo_dbs, cfg: dict | None = None, **detector_over) -> Detector:
    city, asn = geo_dbs
    return Detector(cfg or config(**detector_over), Enricher(city, asn))


class Run:
    """Feeds events into one Detector and keeps every output, in order.

    With `monkeypatch`, the engine's real ``score_code`` is wrapped (not replaced) so that
    each decided code's full verdict (every term, also of codes that did not alert) can be
    inspected: the engine scores exactly once per ScoreRecord, in output order.
    """

    def __init__(self, detector: Detector, monkeypatch=None):
        self.det = detector
        self.out: list = []
        self._verdicts: list = []
        if monkeypatch is not None:
            real = scoring.score_code          # the original, even if another Run spies too

            def spy(*args, **kwargs):
                verdict = real(*args, **kwargs)
                self._verdicts.append(verdict)
                return verdict
            monkeypatch.setattr(engine, "score_code", spy)
        self._ids = itertools.count(1)
        self._sessions = itertools.count(1)

    # ------------------------------------------------------------------ raw events
    def send(self, etype: str, t: float, user: str, **fields) -> list:
        doc = {"event_id": fields.pop("event_id", None) or f"ev{next(self._ids)}", "type": etype,
               "ts": iso(t), "user_id": user}
        doc.update({k: v for k, v in fields.items()})
        produced = self.det.process(parse_event(doc))
        self.out.extend(produced)
        return produced

    def login(self, t, user, ip, *, ok=True, device="dev-1", ua=UA_WIN, session=None, **kw) -> str:
        session = session or f"s{next(self._sessions)}"
        self.send("login", t, user, session_id=session, password_ok=ok, ip=ip, device_id=device,
                  user_agent=ua, **kw)
        return session

    def code(self, t, user, session, *, purpose="login", channel="sms", code_id=None, **kw) -> str:
        code_id = code_id or f"code{next(self._ids)}"
        self.send("code_issued", t, user, event_id=code_id, session_id=session, channel=channel,
                  purpose=purpose, **kw)
        return code_id

    def verify(self, t, user, session, success=True, **kw):
        return self.send("code_verified", t, user, session_id=session, success=success, **kw)

    def trust(self, t, user, session, device):
        return self.send("device_trusted", t, user, session_id=session, device_id=device)

    def feedback(self, t, user, code_id, verdict):
        return self.send("user_feedback", t, user, code_event_id=code_id, verdict=verdict)

    # ------------------------------------------------------------------ composites
    def sign_in(self, t, user, ip, *, device="dev-1", ua=UA_WIN, verified=True, ok=True,
                purpose="login") -> str:
        """A full login: password, code, code entered 30 s later. Returns the code id."""
        session = self.login(t, user, ip, ok=ok, device=device, ua=ua)
        code_id = self.code(t + 5, user, session, purpose=purpose)
        if verified:
            self.verify(t + 35, user, session)
        return code_id

    def history(self, user, ip=HOME, *, days=12, hour=9, device="dev-1", ua=UA_WIN, start=T0,
                trust_on=2):
        """One verified sign-in a day at `hour` UTC; the device is trusted on day `trust_on`."""
        for d in range(days):
            t = start + d * DAY + hour * HOUR
            session = self.login(t, user, ip, device=device, ua=ua)
            self.code(t + 5, user, session)
            self.verify(t + 35, user, session)
            if d == trust_on:
                self.trust(t + 40, user, session, device)
        return start + days * DAY

    def flush(self) -> list:
        produced = self.det.flush()
        self.out.extend(produced)
        return produced

    # ------------------------------------------------------------------ lookups
    def score(self, code_id: str) -> ScoreRecord:
        found = [o for o in self.out if isinstance(o, ScoreRecord) and o.code_event_id == code_id]
        assert len(found) == 1, f"{code_id}: {len(found)} score records"
        return found[0]

    def alerts(self, code_id: str | None = None) -> list[Alert]:
        return [o for o in self.out if isinstance(o, Alert)
                and (code_id is None or o.code_event_id == code_id)]

    def scores(self) -> list[ScoreRecord]:
        return [o for o in self.out if isinstance(o, ScoreRecord)]

    def verdict(self, code_id: str):
        """The scorer's Verdict for `code_id` (needs `monkeypatch` at construction)."""
        records = self.scores()
        assert len(records) == len(self._verdicts), "outputs bypassed Run"
        found = [v for r, v in zip(records, self._verdicts) if r.code_event_id == code_id]
        assert len(found) == 1, f"{code_id}: {len(found)} verdicts"
        return found[0]

    def terms(self, code_id: str) -> dict[str, float]:
        """reason code -> weight of the code's verdict."""
        return {t.code: t.weight for t in self.verdict(code_id).terms}

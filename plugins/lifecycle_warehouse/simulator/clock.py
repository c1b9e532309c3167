"""Simulated time: the horizon of a run and fast, wall-clock-free timestamp formatting.

Times are floats of seconds since the Unix epoch (UTC) while simulating; they are turned
into ISO-8601 strings only when a row is written. `datetime.isoformat` per web event
would cost more than the rest of the event, so dates are cached per day.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import date, datetime, timedelta, timezone

DAY = 86400.0
HOUR = 3600.0
MINUTE = 60.0
_EPOCH = date(1970, 1, 1)

# Share of the day's traffic per UTC hour: European evening and North American evening
# peaks, a trough in the early European morning.
HOURLY_TRAFFIC = (
    5.0, 4.5, 3.5, 2.5, 1.8, 1.5, 2.0, 3.0, 4.2, 5.0, 5.5, 5.8,
    6.0, 6.0, 6.0, 6.2, 6.5, 7.0, 7.5, 7.6, 7.2, 6.8, 6.2, 5.6,
)
# Relative traffic per weekday (Monday first).
WEEKDAY_TRAFFIC = (1.0, 0.97, 0.95, 0.93, 0.88, 0.82, 0.92)


def epoch_seconds(day: date) -> float:
    return float((day - _EPOCH).days) * DAY


class Clock:
    """The run's horizon: shop history from `history_start`, files for [start, end)."""

    def __init__(self, start: date, days: int, history_days: int):
        self.start_date = start
        self.days = days
        self.start = epoch_seconds(start)
        self.end = self.start + days * DAY
        self.history_start = self.start - history_days * DAY
        self._dates: dict[int, str] = {}
        self._hms: list[str] | None = None  # "HH:MM:SS" for every second of a day, built on first use
        total = sum(HOURLY_TRAFFIC)
        self._hour_cdf = []
        acc = 0.0
        for weight in HOURLY_TRAFFIC:
            acc += weight / total
            self._hour_cdf.append(acc)
        self._hour_cdf[-1] = 1.0

    # --- days -------------------------------------------------------------------
    def day_index(self, t: float) -> int:
        """Index of the window day holding `t` (negative before the window)."""
        return int((t - self.start) // DAY)

    def date_of_index(self, i: int) -> date:
        return self.start_date + timedelta(days=i)

    def date_of(self, t: float) -> date:
        return _EPOCH + timedelta(days=int(t // DAY))

    def in_window(self, t: float) -> bool:
        return self.start <= t < self.end

    # --- realistic times ----------------------------------------------------------
    def time_of_day(self, u: float) -> float:
        """Seconds after midnight for a uniform u in [0, 1), following HOURLY_TRAFFIC."""
        hour = bisect_right(self._hour_cdf, u)
        if hour > 23:
            hour = 23
        low = self._hour_cdf[hour - 1] if hour else 0.0
        frac = (u - low) / (self._hour_cdf[hour] - low)
        return hour * HOUR + frac * HOUR

    def diurnal(self, t: float) -> float:
        """Move `t` within its day so that the time of day follows HOURLY_TRAFFIC; a
        uniform time becomes a realistic one, and the date stays the same."""
        day_start = (t // DAY) * DAY
        return day_start + self.time_of_day((t - day_start) / DAY)

    @staticmethod
    def weekday_weight(t: float) -> float:
        """Traffic weight of `t`'s weekday relative to the busiest day (for thinning)."""
        weekday = (int(t // DAY) + 3) % 7  # 1970-01-01 was a Thursday
        return WEEKDAY_TRAFFIC[weekday]

    # --- formatting -----------------------------------------------------------------
    def _date_str(self, d: int) -> str:
        s = self._dates.get(d)
        if s is None:
            s = (_EPOCH + timedelta(days=d)).isoformat()
            self._dates[d] = s
        return s

    def _hms_table(self) -> list[str]:
        if self._hms is None:
            self._hms = [f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}" for s in range(86400)]
        return self._hms

    def iso(self, t: float) -> str:
        """ISO-8601 UTC to the second: 2026-09-01T10:15:30Z."""
        hms = self._hms or self._hms_table()
        d, rem = divmod(int(t), 86400)
        return f"{self._dates.get(d) or self._date_str(d)}T{hms[rem]}Z"

    def iso_ms(self, ms: int) -> str:
        """ISO-8601 UTC to the millisecond, from integer milliseconds since the epoch
        (the web writer's hot path: table look-ups instead of datetime)."""
        hms = self._hms or self._hms_table()
        s, milli = divmod(ms, 1000)
        d, rem = divmod(s, 86400)
        date_str = self._dates.get(d) or self._date_str(d)
        return f"{date_str}T{hms[rem]}.{milli:03d}Z"

    def pg(self, t: float) -> str:
        """PostgreSQL timestamptz text for COPY: 2026-09-01 10:15:30+00."""
        s = int(t)
        d, rem = divmod(s, 86400)
        return f"{self._date_str(d)} {rem // 3600:02d}:{rem % 3600 // 60:02d}:{rem % 60:02d}+00"

    @staticmethod
    def to_datetime(t: float) -> datetime:
        return datetime.fromtimestamp(int(t), tz=timezone.utc)

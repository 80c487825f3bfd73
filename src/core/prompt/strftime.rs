//! The date a chat template's `strftime_now(format)` returns (`prompt.date`): a fixed day at
//! midnight, formatted as Python's `datetime.strftime` formats it on Linux (glibc's conversions,
//! the C locale, a naive time: `%Z` and `%z` are empty).

/// A calendar day (years 1000 to 9999).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    year: i32,
    month: u32,
    day: u32,
}

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

impl Default for Date {
    fn default() -> Self {
        Date::DEFAULT
    }
}

impl Date {
    /// `prompt.date`'s default: 26 July 2024, the date Llama 3's templates fall back to when
    /// `strftime_now` is not defined, so that their prompts did not change when it was.
    pub const DEFAULT: Date = Date {
        year: 2024,
        month: 7,
        day: 26,
    };

    /// `YYYY-MM-DD`, a real day.
    pub fn parse(text: &str) -> Result<Date, String> {
        let bad = || format!("{text:?} is not a date written YYYY-MM-DD (e.g. \"2026-01-01\")");
        let parts: Vec<&str> = text.split('-').collect();
        let [y, m, d] = parts[..] else { return Err(bad()) };
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !(digits(y, 4) && digits(m, 2) && digits(d, 2)) {
            return Err(bad());
        }
        let (year, month, day) = (
            y.parse().map_err(|_| bad())?,
            m.parse().map_err(|_| bad())?,
            d.parse().map_err(|_| bad())?,
        );
        if year < 1000 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(format!("{text:?} is not a day of the calendar"));
        }
        Ok(Date { year, month, day })
    }

    /// Day of the year, 1-based.
    fn ordinal(&self) -> u32 {
        (1..self.month).map(|m| days_in_month(self.year, m)).sum::<u32>() + self.day
    }

    /// 0 = Sunday.
    fn weekday(&self) -> u32 {
        // Days since 1970-01-01 (a Thursday), Howard Hinnant's days_from_civil.
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        (days + 4).rem_euclid(7) as u32
    }

    fn days_since_epoch(&self) -> i64 {
        let y = i64::from(self.year);
        let before: i64 = (1970..y).map(|y| 365 + i64::from(is_leap(y as i32))).sum();
        before + i64::from(self.ordinal()) - 1
    }

    /// ISO 8601 week-based year and week.
    fn iso_week(&self) -> (i32, u32) {
        let iso_wday = (self.weekday() + 6) % 7 + 1; // Monday = 1
        let week = (self.ordinal() as i32 - iso_wday as i32 + 10) / 7;
        if week < 1 {
            (self.year - 1, iso_weeks(self.year - 1))
        } else if week as u32 > iso_weeks(self.year) {
            (self.year + 1, 1)
        } else {
            (self.year, week as u32)
        }
    }

    /// `format` with Python's (glibc's) conversions, at 00:00:00; flags `-` (no padding), `_`
    /// (spaces), `0` (zeros) and `^` (upper case). An unknown conversion is kept as written.
    pub fn strftime(&self, format: &str) -> String {
        let mut out = String::new();
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let flag = chars.next_if(|f| matches!(f, '-' | '_' | '0' | '^'));
            let Some(conv) = chars.next() else {
                out.push('%');
                out.extend(flag);
                break;
            };
            match self.field(conv) {
                Some(field) => out.push_str(&field.render(flag)),
                None => {
                    out.push('%');
                    out.extend(flag);
                    out.push(conv);
                }
            }
        }
        out
    }

    fn field(&self, conv: char) -> Option<Field> {
        let (wday, month) = (self.weekday() as usize, self.month as usize - 1);
        let num = |v: i64, width: usize| Field::Num(v, width, '0');
        let text = |s: String| Field::Text(s);
        Some(match conv {
            'a' => text(DAYS[wday][..3].into()),
            'A' => text(DAYS[wday].into()),
            'b' | 'h' => text(MONTHS[month][..3].into()),
            'B' => text(MONTHS[month].into()),
            'c' => text(self.strftime("%a %b %e %H:%M:%S %Y")),
            'C' => num(i64::from(self.year / 100), 2),
            'd' => num(i64::from(self.day), 2),
            'D' | 'x' => text(self.strftime("%m/%d/%y")),
            'e' => Field::Num(i64::from(self.day), 2, ' '),
            'F' => text(self.strftime("%Y-%m-%d")),
            'g' => num(i64::from(self.iso_week().0 % 100), 2),
            'G' => num(i64::from(self.iso_week().0), 1),
            'H' | 'M' | 'S' => num(0, 2),
            'I' => num(12, 2),
            'j' => num(i64::from(self.ordinal()), 3),
            'k' => Field::Num(0, 2, ' '),
            'l' => Field::Num(12, 2, ' '),
            'm' => num(self.month.into(), 2),
            'n' => text("\n".into()),
            'p' => text("AM".into()),
            'P' => text("am".into()),
            'r' => text("12:00:00 AM".into()),
            'R' => text("00:00".into()),
            's' => num(self.days_since_epoch() * 86_400, 1),
            't' => text("\t".into()),
            'T' | 'X' => text("00:00:00".into()),
            'u' => num((wday as i64 + 6) % 7 + 1, 1),
            'U' => num(i64::from((self.ordinal() - 1 + 7 - wday as u32) / 7), 2),
            'V' => num(i64::from(self.iso_week().1), 2),
            'w' => num(wday as i64, 1),
            'W' => num(i64::from((self.ordinal() - 1 + 7 - (wday as u32 + 6) % 7) / 7), 2),
            'y' => num(i64::from(self.year % 100), 2),
            'Y' => num(i64::from(self.year), 1),
            'z' | 'Z' => text(String::new()),
            '%' => text("%".into()),
            _ => return None,
        })
    }
}

/// One conversion's value: a number with its width and padding, or text.
enum Field {
    Num(i64, usize, char),
    Text(String),
}

impl Field {
    fn render(&self, flag: Option<char>) -> String {
        match (self, flag) {
            (Field::Text(s), Some('^')) => s.to_uppercase(),
            (Field::Text(s), _) => s.clone(),
            (Field::Num(v, _, _), Some('-')) => v.to_string(),
            (Field::Num(v, w, _), Some('_')) => format!("{v:>w$}"),
            (Field::Num(v, w, _), Some('0')) => format!("{v:0>w$}"),
            (Field::Num(v, w, ' '), _) => format!("{v:>w$}"),
            (Field::Num(v, w, _), _) => format!("{v:0>w$}"),
        }
    }
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// 53 where 1 January is a Thursday, or a Wednesday in a leap year; else 52.
fn iso_weeks(y: i32) -> u32 {
    let jan1 = Date {
        year: y,
        month: 1,
        day: 1,
    }
    .weekday();
    if jan1 == 4 || (jan1 == 3 && is_leap(y)) {
        53
    } else {
        52
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each against Python 3.11's `datetime(Y, M, D).strftime(format)` on Linux.
    #[test]
    fn formats_as_python_does() {
        let d = Date::DEFAULT;
        assert_eq!(d.strftime("%d %b %Y"), "26 Jul 2024");
        assert_eq!(d.strftime("%Y-%m-%d"), "2024-07-26");
        assert_eq!(d.strftime("%B %d, %Y"), "July 26, 2024");
        assert_eq!(
            d.strftime("%A %a %j %U %W %V %G %u %w"),
            "Friday Fri 208 29 30 30 2024 5 5"
        );
        assert_eq!(
            d.strftime("%c|%x|%X|%p|%I|%Z|%z|%%|%Q|%"),
            "Fri Jul 26 00:00:00 2024|07/26/24|00:00:00|AM|12|||%|%Q|%"
        );
        assert_eq!(d.strftime("%s"), "1721952000");
        assert_eq!(
            d.strftime("%k|%l|%r|%R|%T|%D|%F|%h|%n|%t|%P|%-H|%_d|%0e|%^p|%^a"),
            " 0|12|12:00:00 AM|00:00|00:00:00|07/26/24|2024-07-26|Jul|\n|\t|am|0|26|26|AM|FRI"
        );
        let jan = Date::parse("2026-01-01").unwrap();
        assert_eq!(
            jan.strftime("%-d %-m %e %_m %^b %^A %y %C"),
            "1 1  1  1 JAN THURSDAY 26 20"
        );
        assert_eq!(jan.strftime("%V %G %g %U %W %j"), "01 2026 26 00 00 001");
        let sun = Date::parse("2021-01-03").unwrap(); // ISO week 53 of 2020
        assert_eq!(sun.strftime("%a %V %G %U %W"), "Sun 53 2020 01 00");
        assert_eq!(Date::parse("2024-02-29").unwrap().strftime("%j %a"), "060 Thu");
    }

    #[test]
    fn only_real_days_parse() {
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "24-01-01",
            "2024-1-01",
            "2024/01/01",
            "",
            "0999-01-01",
            "2024-01-01T00:00",
        ] {
            assert!(Date::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Date::parse("2024-07-26"), Ok(Date::DEFAULT));
    }
}

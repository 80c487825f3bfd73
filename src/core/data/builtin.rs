//! The built-in set: 1000 unit-conversion questions with exact numeric answers, the same on
//! every machine and version.
use super::Question;
use crate::base::record::Answer;
use crate::base::sampling::Rng;

/// Number of questions in the built-in set.
pub const BUILTIN_COUNT: usize = 1000;
/// Fixed seed of the built-in set: it is one data set, the same for every run and version.
const BUILTIN_SEED: u64 = 0x5EED_0FF1_C1A1;

/// A conversion: `to = from * factor + offset`.
struct Conversion {
    from: (&'static str, &'static str),
    to: &'static str,
    factor: f64,
    offset: f64,
}

const fn conv(from: &'static str, from_plural: &'static str, to: &'static str, factor: f64) -> Conversion {
    Conversion {
        from: (from, from_plural),
        to,
        factor,
        offset: 0.0,
    }
}

/// Exact factors (international definitions) grouped by quantity.
const CONVERSIONS: &[Conversion] = &[
    // length
    conv("kilometer", "kilometers", "meters", 1000.0),
    conv("meter", "meters", "centimeters", 100.0),
    conv("centimeter", "centimeters", "millimeters", 10.0),
    conv("mile", "miles", "kilometers", 1.609344),
    conv("mile", "miles", "feet", 5280.0),
    conv("foot", "feet", "inches", 12.0),
    conv("foot", "feet", "meters", 0.3048),
    conv("inch", "inches", "centimeters", 2.54),
    conv("yard", "yards", "meters", 0.9144),
    conv("yard", "yards", "feet", 3.0),
    // mass
    conv("kilogram", "kilograms", "grams", 1000.0),
    conv("gram", "grams", "milligrams", 1000.0),
    conv("pound", "pounds", "kilograms", 0.45359237),
    conv("pound", "pounds", "ounces", 16.0),
    conv("ounce", "ounces", "grams", 28.349523125),
    conv("metric ton", "metric tons", "kilograms", 1000.0),
    // volume
    conv("liter", "liters", "milliliters", 1000.0),
    conv("gallon", "gallons", "liters", 3.785411784),
    conv("gallon", "gallons", "quarts", 4.0),
    conv("quart", "quarts", "pints", 2.0),
    conv("cubic meter", "cubic meters", "liters", 1000.0),
    conv("cup", "cups", "fluid ounces", 8.0),
    // time
    conv("hour", "hours", "minutes", 60.0),
    conv("minute", "minutes", "seconds", 60.0),
    conv("hour", "hours", "seconds", 3600.0),
    conv("day", "days", "hours", 24.0),
    conv("week", "weeks", "days", 7.0),
    conv("millisecond", "milliseconds", "microseconds", 1000.0),
    // speed
    conv(
        "kilometer per hour",
        "kilometers per hour",
        "meters per second",
        1.0 / 3.6,
    ),
    conv("meter per second", "meters per second", "kilometers per hour", 3.6),
    conv("mile per hour", "miles per hour", "kilometers per hour", 1.609344),
    conv("knot", "knots", "kilometers per hour", 1.852),
    // data sizes
    conv("gigabyte", "gigabytes", "megabytes", 1000.0),
    conv("megabyte", "megabytes", "kilobytes", 1000.0),
    conv("kibibyte", "kibibytes", "bytes", 1024.0),
    conv("gibibyte", "gibibytes", "mebibytes", 1024.0),
    conv("byte", "bytes", "bits", 8.0),
    // area and energy
    conv("hectare", "hectares", "square meters", 10_000.0),
    conv("square kilometer", "square kilometers", "hectares", 100.0),
    conv("kilowatt-hour", "kilowatt-hours", "kilojoules", 3600.0),
    conv("kilocalorie", "kilocalories", "kilojoules", 4.184),
    // temperature (affine)
    Conversion {
        from: ("degree Celsius", "degrees Celsius"),
        to: "degrees Fahrenheit",
        factor: 1.8,
        offset: 32.0,
    },
    Conversion {
        from: ("degree Celsius", "degrees Celsius"),
        to: "kelvin",
        factor: 1.0,
        offset: 273.15,
    },
];

const TEMPLATES: &[&str] = &[
    "How many {to} are in {v} {from}?",
    "Convert {v} {from} to {to}.",
    "What is {v} {from} in {to}?",
    "Express {v} {from} in {to}.",
];

/// The built-in set: `count` unit-conversion questions, the same on every machine.
pub fn builtin(count: usize) -> Vec<Question> {
    let mut rng = Rng::from_seed(BUILTIN_SEED);
    (0..count)
        .map(|_| {
            let c = &CONVERSIONS[(rng.next_u64() % CONVERSIONS.len() as u64) as usize];
            let t = TEMPLATES[(rng.next_u64() % TEMPLATES.len() as u64) as usize];
            // Mostly whole numbers 1..=100, sometimes one decimal.
            let whole = 1 + rng.next_u64() % 100;
            let v = if rng.next_u64().is_multiple_of(4) {
                whole as f64 + (rng.next_u64() % 9 + 1) as f64 / 10.0
            } else {
                whole as f64
            };
            let from = if v == 1.0 { c.from.0 } else { c.from.1 };
            let question = t
                .replace("{v}", &format_number(v))
                .replace("{from}", from)
                .replace("{to}", c.to);
            Question::new(question, Answer::Number(round_sig(v * c.factor + c.offset, 12)))
        })
        .collect()
}

/// Rounds away binary noise (`1.1 * 1000 = 1100.0000000000002`).
fn round_sig(x: f64, digits: i32) -> f64 {
    if x == 0.0 {
        return 0.0;
    }
    let scale = 10f64.powi(digits - 1 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

/// Shortest decimal form without a trailing `.0`.
pub fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_is_deterministic_and_exact() {
        let a = builtin(1000);
        assert_eq!(a[..200], builtin(200)[..]);
        assert_eq!(a[..10], builtin(10)[..]);
        let kinds: std::collections::HashSet<&str> = a.iter().map(|q| q.question.split(' ').next().unwrap()).collect();
        assert!(kinds.len() >= 4);
        for q in &a {
            assert!(
                matches!(q.answer, Answer::Number(a) if a.is_finite() && a > 0.0),
                "{q:?}"
            );
        }
        // Spot-check a parse of every question against its conversion.
        let km = a
            .iter()
            .find(|q| {
                q.question.contains("kilometers") && q.question.contains(" meters") && !q.question.contains("per")
            })
            .unwrap();
        let v: f64 = km.question.split(' ').find_map(|w| w.parse().ok()).unwrap();
        assert_eq!(km.answer, Answer::Number(round_sig(v * 1000.0, 12)), "{km:?}");
    }

    #[test]
    fn rounding_removes_noise() {
        assert_eq!(round_sig(1.1 * 1000.0, 12), 1100.0);
        assert_eq!(format_number(3.0), "3");
        assert_eq!(format_number(2.5), "2.5");
    }
}

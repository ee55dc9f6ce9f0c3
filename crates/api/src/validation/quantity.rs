//! Resource quantities (`500m`, `1Gi`, `2e3`), parsed exactly enough to compare.
//!
//! Values are held as a count of nano-units in an `i128`, which covers every suffix up
//! to `Ei` without rounding; fractions finer than a nano-unit round up, as upstream
//! rounds to the smallest scale it keeps. Absurdly large values saturate instead of
//! failing, so they still compare as large.

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

/// The upstream parse error text, which kubectl users know from decode failures.
pub const QUANTITY_FORMAT_ERROR: &str = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// Why a quantity did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("{QUANTITY_FORMAT_ERROR}")]
    Format,
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

/// A parsed quantity; `Ord` compares values, so `1000m == 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    nanos: i128,
}

const NANO: i128 = 1_000_000_000;

impl Quantity {
    /// Parses the string form (`"1.5Gi"`).
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let s = s.trim();
        let num_end = s.find(|c: char| !(c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))).unwrap_or(s.len());
        // A sign may only lead; `1e-3` puts its sign in the suffix, found below.
        let (number, suffix) = s.split_at(num_end);
        let (negative, digits) = match number.as_bytes().first() {
            Some(b'-') => (true, &number[1..]),
            Some(b'+') => (false, &number[1..]),
            _ => (false, number),
        };
        if digits.is_empty() || digits.contains(['+', '-']) || digits.matches('.').count() > 1 || digits == "." {
            return Err(QuantityError::Format);
        }
        let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
        // mantissa = int_part.frac_part as an integer, scaled down by 10^frac_len.
        let mut mantissa: i128 = 0;
        for c in int_part.chars().chain(frac_part.chars()) {
            mantissa = mantissa.saturating_mul(10).saturating_add((c as u8 - b'0') as i128);
        }
        // Wide enough that no suffix or `e` exponent (an `i32`) can overflow it.
        let mut exp10: i64 = -(frac_part.len() as i64);
        let mut exp2: u32 = 0;
        match suffix {
            "" => {}
            "n" => exp10 -= 9,
            "u" => exp10 -= 6,
            "m" => exp10 -= 3,
            "k" => exp10 += 3,
            "M" => exp10 += 6,
            "G" => exp10 += 9,
            "T" => exp10 += 12,
            "P" => exp10 += 15,
            "E" => exp10 += 18,
            "Ki" => exp2 = 10,
            "Mi" => exp2 = 20,
            "Gi" => exp2 = 30,
            "Ti" => exp2 = 40,
            "Pi" => exp2 = 50,
            "Ei" => exp2 = 60,
            _ if suffix.starts_with(['e', 'E']) => {
                let e = &suffix[1..];
                let valid = !e.is_empty()
                    && e.trim_start_matches(['+', '-']).chars().all(|c| c.is_ascii_digit())
                    && e.len() > usize::from(e.starts_with(['+', '-']));
                if !valid {
                    return Err(QuantityError::Suffix);
                }
                exp10 += i64::from(e.parse::<i32>().map_err(|_| QuantityError::Suffix)?);
            }
            _ if suffix.chars().all(|c| "eEinumkKMGTP+-0123456789".contains(c)) => return Err(QuantityError::Suffix),
            _ => return Err(QuantityError::Format),
        }
        let mut nanos = mantissa.saturating_mul(1 << exp2);
        let scale = exp10 + 9;
        if scale >= 0 {
            for _ in 0..scale.min(60) {
                nanos = nanos.saturating_mul(10);
            }
        } else {
            let mut div: i128 = 1;
            for _ in 0..(-scale).min(38) {
                div = div.saturating_mul(10);
            }
            // Rounds up without `nanos + div - 1`, which overflows a saturated mantissa.
            nanos = nanos / div + i128::from(nanos % div != 0);
        }
        Ok(Quantity { nanos: if negative { -nanos } else { nanos } })
    }

    /// Parses a JSON quantity: upstream accepts bare numbers as well as strings.
    pub fn from_json(v: &Value) -> Result<Quantity, QuantityError> {
        match v {
            Value::String(s) => Quantity::parse(s),
            Value::Number(n) => Quantity::parse(&n.to_string()),
            _ => Err(QuantityError::Format),
        }
    }

    pub fn zero() -> Quantity {
        Quantity { nanos: 0 }
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The value in thousandths, rounded up (`MilliValue`).
    pub fn milli_value(&self) -> i128 {
        div_ceil(self.nanos, 1_000_000)
    }

    /// The value in whole units, rounded up (`Value`).
    pub fn value(&self) -> i128 {
        div_ceil(self.nanos, NANO)
    }

    /// Whether the value is a whole number.
    pub fn is_integer(&self) -> bool {
        self.nanos % NANO == 0
    }

    /// The value as a float, for ratios.
    pub fn as_f64(&self) -> f64 {
        self.nanos as f64 / NANO as f64
    }
}

fn div_ceil(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b > 0 {
        q + 1
    } else {
        q
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl fmt::Display for Quantity {
    /// A plain decimal rendering; callers that echo user input print the input instead.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos % NANO == 0 {
            write!(f, "{}", self.nanos / NANO)
        } else if self.nanos % 1_000_000 == 0 {
            write!(f, "{}m", self.nanos / 1_000_000)
        } else {
            write!(f, "{}n", self.nanos)
        }
    }
}

/// Orders two JSON quantities; `None` if either does not parse.
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    Some(Quantity::from_json(a).ok()?.cmp(&Quantity::from_json(b).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn suffixes_scale_values() {
        assert_eq!(q("1"), q("1000m"));
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("1k"), q("1e3"));
        assert_eq!(q("1.5Gi"), q("1536Mi"));
        assert_eq!(q("0.1"), q("100m"));
        assert!(q("1Gi") > q("1G"));
        assert!(q("-1").is_negative());
    }

    #[test]
    fn malformed_quantities_are_rejected() {
        assert_eq!(Quantity::parse("abc"), Err(QuantityError::Format));
        assert_eq!(Quantity::parse("1.2.3"), Err(QuantityError::Format));
        assert_eq!(Quantity::parse("1Kb"), Err(QuantityError::Format));
        assert_eq!(Quantity::parse("1ii"), Err(QuantityError::Suffix));
        assert_eq!(Quantity::parse(""), Err(QuantityError::Format));
    }

    #[test]
    fn values_round_up() {
        assert_eq!(q("1500m").value(), 2);
        assert_eq!(q("1").milli_value(), 1000);
        assert!(q("2").is_integer());
        assert!(!q("0.5").is_integer());
    }

    #[test]
    fn extreme_exponents_saturate_instead_of_overflowing() {
        assert!(q("1e2147483647") > q("1Ei"));
        assert_eq!(q("1e-2147483648"), q("1n"));
        assert!(q("-1e2147483647") < q("-1Ei"));
        assert_eq!(q("0.1e-2147483648"), q("1n"));
        assert_eq!(q("0e2147483647"), q("0"));
    }

    #[test]
    fn huge_mantissas_with_fractions_saturate_instead_of_overflowing() {
        let huge = format!("{}.5", "9".repeat(50));
        assert!(q(&huge) > q("1Ei"));
        assert_eq!(q(&format!("{huge}n")), q(&format!("{huge}n")));
        assert!(q(&format!("-{huge}")).is_negative());
    }

    #[test]
    fn json_numbers_are_quantities() {
        assert_eq!(Quantity::from_json(&serde_json::json!(2)).unwrap(), q("2"));
        assert_eq!(Quantity::from_json(&serde_json::json!(0.5)).unwrap(), q("500m"));
    }
}

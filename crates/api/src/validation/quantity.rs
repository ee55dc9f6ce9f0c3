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

// === canonical forms ===

/// The notation a quantity was written in (`resource.Format`). Upstream keeps it with
/// the value and prints the value back in the same notation, canonically, so `0.5`
/// prints as `500m` and `1536Mi` stays `1536Mi`; messages that quote quantities
/// (quota and limit-range refusals) read that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `1500m`, `2`, `1k`.
    DecimalSI,
    /// `1Ki`, `128Mi`.
    BinarySI,
    /// `1e3`.
    DecimalExponent,
}

impl Format {
    /// The notation of a written quantity (`DecimalSI` when it cannot tell).
    pub fn of(s: &str) -> Format {
        let s = s.trim();
        let num_end = s.find(|c: char| !(c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))).unwrap_or(s.len());
        match &s[num_end..] {
            "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => Format::BinarySI,
            suffix if suffix.starts_with(['e', 'E']) => Format::DecimalExponent,
            _ => Format::DecimalSI,
        }
    }
}

const DECIMAL_SUFFIXES: &[(i64, &str)] = &[(-9, "n"), (-6, "u"), (-3, "m"), (0, ""), (3, "k"), (6, "M"), (9, "G"), (12, "T"), (15, "P"), (18, "E")];
const BINARY_SUFFIXES: &[&str] = &["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

impl Quantity {
    /// An integer quantity (`resource.NewQuantity`).
    pub fn from_int(n: i64) -> Quantity {
        Quantity { nanos: i128::from(n) * NANO }
    }

    /// The sum, saturating like the parser does.
    pub fn saturating_add(self, other: Quantity) -> Quantity {
        Quantity { nanos: self.nanos.saturating_add(other.nanos) }
    }

    /// Whether the value is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// `Quantity.String()`: the canonical text in `format`. Binary notation is kept
    /// for whole values of at least 1024; anything else prints in decimal.
    pub fn canonical(&self, format: Format) -> String {
        if format == Format::BinarySI && self.nanos.abs() >= 1024 * NANO && self.nanos % NANO == 0 {
            let mut units = self.nanos / NANO;
            let mut power = 0;
            while units % 1024 == 0 && power + 1 < BINARY_SUFFIXES.len() {
                units /= 1024;
                power += 1;
            }
            return format!("{units}{}", BINARY_SUFFIXES[power]);
        }
        if self.nanos == 0 {
            return "0".into();
        }
        // mantissa × 10^exponent with no trailing zeros, then the exponent lowered
        // to a multiple of three, as upstream's `AsCanonicalBytes`.
        let mut mantissa = self.nanos;
        let mut exponent: i64 = -9;
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exponent += 1;
        }
        while exponent.rem_euclid(3) != 0 {
            mantissa = mantissa.saturating_mul(10);
            exponent -= 1;
        }
        match format {
            Format::DecimalExponent if exponent == 0 => format!("{mantissa}"),
            Format::DecimalExponent => format!("{mantissa}e{exponent}"),
            _ => match DECIMAL_SUFFIXES.iter().find(|(e, _)| *e == exponent) {
                Some((_, suffix)) => format!("{mantissa}{suffix}"),
                None => format!("{mantissa}e{exponent}"),
            },
        }
    }
}

/// A quantity with its notation: what upstream's `resource.Quantity` carries. Sums
/// keep the notation of the first non-zero term, as `Quantity.Add` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    pub value: Quantity,
    pub format: Format,
}

impl Amount {
    /// A count (`resource.NewQuantity(n, DecimalSI)`).
    pub fn count(n: i64) -> Amount {
        Amount { value: Quantity::from_int(n), format: Format::DecimalSI }
    }

    /// Zero, as a fresh `resource.Quantity` is.
    pub fn zero() -> Amount {
        Amount::count(0)
    }

    /// A JSON quantity with the notation it was written in.
    pub fn from_json(v: &Value) -> Result<Amount, QuantityError> {
        let format = v.as_str().map(Format::of).unwrap_or(Format::DecimalSI);
        Ok(Amount { value: Quantity::from_json(v)?, format })
    }

}

/// `Quantity.Add`: a zero sum takes the notation of what is added to it.
impl std::ops::Add for Amount {
    type Output = Amount;
    fn add(self, other: Amount) -> Amount {
        let format = if self.value.is_zero() { other.format } else { self.format };
        Amount { value: self.value.saturating_add(other.value), format }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value.canonical(self.format))
    }
}

/// The canonical text of a JSON quantity, or its raw text when it does not parse.
pub fn canonical(v: &Value) -> String {
    match Amount::from_json(v) {
        Ok(a) => a.to_string(),
        Err(_) => v.as_str().map(String::from).unwrap_or_else(|| v.to_string()),
    }
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

    #[test]
    fn canonical_forms_match_upstream_strings() {
        let c = |s: &str| canonical(&serde_json::json!(s));
        assert_eq!(c("0.5"), "500m");
        assert_eq!(c("1500m"), "1500m");
        assert_eq!(c("2000m"), "2");
        assert_eq!(c("1000"), "1k");
        assert_eq!(c("1536Mi"), "1536Mi");
        assert_eq!(c("1.5Gi"), "1536Mi");
        assert_eq!(c("1024Mi"), "1Gi");
        assert_eq!(c("512"), "512");
        assert_eq!(c("100Ki"), "100Ki");
        assert_eq!(c("0.5Ki"), "512");
        assert_eq!(c("1e3"), "1e3");
        assert_eq!(c("0"), "0");
        assert_eq!(c("128974848"), "128974848");
        assert_eq!(canonical(&serde_json::json!(2)), "2");
    }

    #[test]
    fn sums_keep_the_notation_of_the_first_term() {
        let a = |s: &str| Amount::from_json(&serde_json::json!(s)).unwrap();
        assert_eq!((Amount::zero() + a("1Gi") + a("512Mi")).to_string(), "1536Mi");
        assert_eq!((a("500m") + a("1")).to_string(), "1500m");
        assert_eq!((a("1") + a("1")).to_string(), "2");
    }
}

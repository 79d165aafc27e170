//! Card-number checks, shared with order-api so it can refuse a bad card before writing an order.

/// Why a card number is unusable, in words a caller can show.
pub fn validate_card_number(card: &str) -> Result<(), &'static str> {
    if card.is_empty() {
        return Err("card_number is required");
    }
    if !card.bytes().all(|b| b.is_ascii_digit()) {
        return Err("card_number must contain digits only");
    }
    if !(12..=19).contains(&card.len()) {
        return Err("card_number must have 12 to 19 digits");
    }
    if !luhn_valid(card) {
        return Err("card_number fails the Luhn check");
    }
    Ok(())
}

fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::validate_card_number;

    #[test]
    fn test_cards() {
        assert!(validate_card_number("4242424242424242").is_ok());
        assert!(validate_card_number("4000000000000002").is_ok());
        assert!(validate_card_number("4000000000009995").is_ok());
        assert!(validate_card_number("4242424242424241").is_err());
        assert!(validate_card_number("4242-4242").is_err());
        assert!(validate_card_number("").is_err());
        assert!(validate_card_number("42424242424242424242").is_err());
    }
}

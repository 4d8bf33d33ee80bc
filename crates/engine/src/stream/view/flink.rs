//! Flink SQL's windowing table-valued functions, taken as written for Flink and rewritten to ours before the
//! view's SQL is parsed: `FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(invoice_date), INTERVAL '1' MINUTES))`
//! is `FROM TUMBLE(orders, invoice_date, INTERVAL '1' MINUTES)`, and the same for `HOP` (slide, then size, as
//! Flink has them) and `SESSION` (whose `PARTITION BY` is dropped: a session is kept per group of the view's
//! `GROUP BY`, so group by the partition keys). Only the inside of a `TABLE(<window>(...))` is rewritten, on
//! SQL tokens, so strings, quoted names and the rest of the query are left as they are.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

const WINDOWS: [&str; 3] = ["TUMBLE", "HOP", "SESSION"];

/// `sql` with Flink's window syntax rewritten to ours (unchanged when it has none, or does not tokenize:
/// the parser then says what is wrong).
pub fn rewrite(sql: &str) -> String {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql)
        .with_unescape(false)
        .tokenize()
    else {
        return sql.to_string();
    };
    if !tokens.iter().any(|t| is_word(t, "DESCRIPTOR")) {
        return sql.to_string();
    }
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    // Depths of the parentheses whose closing one goes with a `TABLE(` that was dropped: inside one, the
    // window's arguments are rewritten.
    let mut dropped_closes: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        let next = next_solid(&tokens, i + 1);
        let inside = !dropped_closes.is_empty();
        match t {
            // `TABLE(` before a window function: dropped, with its `)`.
            Token::Word(w) if w.keyword == Keyword::TABLE && opens_window(&tokens, next) => {
                depth += 1;
                dropped_closes.push(depth);
                i = next.unwrap_or(i) + 1;
                continue;
            }
            // `TABLE name` as a window's argument: the name.
            Token::Word(w)
                if inside
                    && w.keyword == Keyword::TABLE
                    && next.is_some_and(|n| matches!(tokens[n], Token::Word(_))) =>
            {
                i = next.unwrap_or(i + 1);
                continue;
            }
            // `DESCRIPTOR(column)`: the column.
            Token::Word(_) if inside && is_word(t, "DESCRIPTOR") => {
                if let Some((column, end)) = descriptor(&tokens, i) {
                    out.push(column);
                    i = end + 1;
                    continue;
                }
            }
            // `PARTITION BY key` or `PARTITION BY (keys)` in a SESSION: dropped.
            Token::Word(w) if inside && w.keyword == Keyword::PARTITION => {
                if let Some(end) = partition_by(&tokens, i) {
                    i = end + 1;
                    continue;
                }
            }
            Token::LParen => depth += 1,
            Token::RParen => {
                let closes_dropped = dropped_closes.last() == Some(&depth);
                depth = depth.saturating_sub(1);
                if closes_dropped {
                    dropped_closes.pop();
                    i += 1;
                    continue;
                }
            }
            _ => {}
        }
        out.push(t.clone());
        i += 1;
    }
    out.iter().map(Token::to_string).collect()
}

/// Whether the tokens from `at` are `( TUMBLE|HOP|SESSION (`.
fn opens_window(tokens: &[Token], at: Option<usize>) -> bool {
    let Some(open) = at.filter(|&k| tokens[k] == Token::LParen) else {
        return false;
    };
    let function = next_solid(tokens, open + 1);
    let call = function.and_then(|f| next_solid(tokens, f + 1));
    function.is_some_and(|f| WINDOWS.iter().any(|w| is_word(&tokens[f], w)))
        && call.is_some_and(|c| tokens[c] == Token::LParen)
}

fn is_word(t: &Token, word: &str) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// The index of the first token from `i` that is not whitespace.
fn next_solid(tokens: &[Token], i: usize) -> Option<usize> {
    (i..tokens.len()).find(|&k| !matches!(tokens[k], Token::Whitespace(_)))
}

/// `DESCRIPTOR ( column )` at `i`: the column, and the index of the `)`.
fn descriptor(tokens: &[Token], i: usize) -> Option<(Token, usize)> {
    let open = next_solid(tokens, i + 1).filter(|&k| tokens[k] == Token::LParen)?;
    let column = next_solid(tokens, open + 1).filter(|&k| matches!(tokens[k], Token::Word(_)))?;
    let close = next_solid(tokens, column + 1).filter(|&k| tokens[k] == Token::RParen)?;
    Some((tokens[column].clone(), close))
}

/// `PARTITION BY key` or `PARTITION BY (key, ...)` at `i`: the index of its last token.
fn partition_by(tokens: &[Token], i: usize) -> Option<usize> {
    let by = next_solid(tokens, i + 1).filter(|&k| is_word(&tokens[k], "BY"))?;
    let first = next_solid(tokens, by + 1)?;
    if tokens[first] != Token::LParen {
        return matches!(tokens[first], Token::Word(_)).then_some(first);
    }
    let mut depth = 0usize;
    for (k, t) in tokens.iter().enumerate().skip(first) {
        match t {
            Token::LParen => depth += 1,
            Token::RParen if depth == 1 => return Some(k),
            Token::RParen => depth -= 1,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn flinks_window_functions_become_ours() {
        let cases = [
            (
                "SELECT window_start, count(*) FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(invoice_date), INTERVAL '1' MINUTES)) GROUP BY window_start, window_end",
                "SELECT window_start, count(*) FROM TUMBLE(orders, invoice_date, INTERVAL '1' MINUTES) GROUP BY window_start, window_end",
            ),
            (
                "select * from table( hop( table \"Orders\", descriptor(ts), interval '5' minutes, interval '1' hour ) ) where x = 'TABLE(TUMBLE('",
                "select * from  hop( \"Orders\", ts, interval '5' minutes, interval '1' hour )  where x = 'TABLE(TUMBLE('",
            ),
            (
                "SELECT count(*) FROM TABLE(SESSION(TABLE clicks PARTITION BY user_id, DESCRIPTOR(at), INTERVAL '30' MINUTES)) GROUP BY window_start, window_end, user_id",
                "SELECT count(*) FROM SESSION(clicks , at, INTERVAL '30' MINUTES) GROUP BY window_start, window_end, user_id",
            ),
            (
                "SELECT count(*) FROM TABLE(SESSION(TABLE clicks PARTITION BY (lower(user_id), page), DESCRIPTOR(at), INTERVAL '1' MINUTE)) GROUP BY 1",
                "SELECT count(*) FROM SESSION(clicks , at, INTERVAL '1' MINUTE) GROUP BY 1",
            ),
            // Dataset names that are SQL keywords; quotes doubled inside strings and names.
            (
                "SELECT 'it''s', \"a\"\"b\" FROM TABLE(TUMBLE(TABLE returns, DESCRIPTOR(at), INTERVAL '1' MINUTE))",
                "SELECT 'it''s', \"a\"\"b\" FROM TUMBLE(returns, at, INTERVAL '1' MINUTE)",
            ),
        ];
        for (flink, ours) in cases {
            assert_eq!(rewrite(flink), ours);
        }
        // Nothing outside a `TABLE(<window>(...))` is touched.
        for kept in [
            "SELECT * FROM TUMBLE(orders, invoice_date, INTERVAL '1 minute')",
            "SELECT descriptor, row_number() OVER (PARTITION BY k ORDER BY n) FROM t WHERE s = 'it''s'",
        ] {
            assert_eq!(rewrite(kept), kept);
        }
    }
}

//! Flink SQL's windowing table-valued functions, taken as written for Flink and rewritten to ours before the
//! view's SQL is parsed: `FROM TABLE(TUMBLE(TABLE orders, DESCRIPTOR(invoice_date), INTERVAL '1' MINUTES))`
//! is `FROM TUMBLE(orders, invoice_date, INTERVAL '1' MINUTES)`, and the same for `HOP` (slide, then size, as
//! Flink has them) and `SESSION` (whose `PARTITION BY` is dropped: a session is kept per group of the view's
//! `GROUP BY`). The rewrite works on SQL tokens, so strings and quoted names are left as they are.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

const WINDOWS: [&str; 3] = ["TUMBLE", "HOP", "SESSION"];

/// `sql` with Flink's window syntax rewritten to ours (unchanged when it has none, or does not tokenize:
/// the parser then says what is wrong).
pub fn rewrite(sql: &str) -> String {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return sql.to_string();
    };
    if !tokens.iter().any(|t| is_word(t, "DESCRIPTOR")) {
        return sql.to_string();
    }
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    // Depths of the parentheses whose closing one goes with a `TABLE(` that was dropped.
    let mut dropped_closes = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        let next = next_solid(&tokens, i + 1);
        let after = next.and_then(|n| next_solid(&tokens, n + 1));
        match t {
            // `TABLE(` before a window function: dropped, with its `)`.
            Token::Word(w)
                if w.keyword == Keyword::TABLE
                    && next.is_some_and(|n| tokens[n] == Token::LParen)
                    && after.is_some_and(|a| WINDOWS.iter().any(|f| is_word(&tokens[a], f))) =>
            {
                depth += 1;
                dropped_closes.push(depth);
                i = next.unwrap_or(i) + 1;
                continue;
            }
            // `TABLE name` as a window's argument: the name.
            Token::Word(w)
                if w.keyword == Keyword::TABLE && next.is_some_and(|n| is_name(&tokens[n])) =>
            {
                i = next.unwrap_or(i + 1);
                continue;
            }
            // `DESCRIPTOR(column)`: the column.
            Token::Word(w) if w.value.eq_ignore_ascii_case("DESCRIPTOR") => {
                if let Some((column, end)) = descriptor(&tokens, i) {
                    out.push(column);
                    i = end + 1;
                    continue;
                }
            }
            // `PARTITION BY key` or `PARTITION BY (keys)` in a SESSION: dropped.
            Token::Word(w) if w.keyword == Keyword::PARTITION => {
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

fn is_word(t: &Token, word: &str) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn is_name(t: &Token) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_some() || w.keyword == Keyword::NoKeyword)
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
    (first..tokens.len()).find(|&k| tokens[k] == Token::RParen)
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
                "SELECT count(*) FROM TABLE(SESSION(TABLE clicks PARTITION BY (user_id, page), DESCRIPTOR(at), INTERVAL '1' MINUTE)) GROUP BY 1",
                "SELECT count(*) FROM SESSION(clicks , at, INTERVAL '1' MINUTE) GROUP BY 1",
            ),
        ];
        for (flink, ours) in cases {
            assert_eq!(rewrite(flink), ours);
        }
        let plain = "SELECT * FROM TUMBLE(orders, invoice_date, INTERVAL '1 minute')";
        assert_eq!(rewrite(plain), plain);
    }
}

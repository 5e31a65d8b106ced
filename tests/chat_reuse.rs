//! Multi-turn chat on the real SmolLM2-135M-Instruct: a turn that continues
//! the conversation prefills only its own tokens and gives the greedy ids that
//! recomputing the whole conversation gives; the conversation's ids equal the
//! whole conversation tokenized at once; the system prompt's cache is reused; a
//! reply stopped early is continued like one that maxTokens cut at its length.

mod common;

use kvcache_wasm::load;
use kvcache_wasm::tokenizer::{ChatMessage, Role};
use kvcache_wasm::{BackendKind, CacheOptions, ChatOptions, Generation, Generator, RunOptions};

const FIRST: &str = "What is the capital of France?";
const SECOND: &str = "And of Italy?";

fn smollm2() -> Generator {
    let bytes = std::fs::read(common::fetched("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let loaded = load::from_gguf_bytes(bytes, &BackendKind::default().device()).unwrap();
    let options = CacheOptions {
        max_seq_len: Some(256),
        ..CacheOptions::default()
    };
    Generator::new(loaded, options).unwrap()
}

/// Greedy, at most 8 tokens.
fn turn(reuse: bool) -> ChatOptions {
    ChatOptions {
        run: RunOptions {
            max_new_tokens: 8,
            ..RunOptions::default()
        },
        reuse,
    }
}

/// A chat turn; the prefill's token event must report the counts the summary does.
fn chat(g: &mut Generator, message: &str, reuse: bool) -> Generation {
    let mut first_event = None;
    let out = g
        .chat(message, &turn(reuse), |event| {
            first_event.get_or_insert((event.prefilled, event.reused));
        })
        .unwrap();
    assert_eq!(first_event, Some((out.prefilled, out.reused)));
    out
}

fn sequence_len(g: &Generator) -> usize {
    g.snapshot().unwrap().tokens.len()
}

#[test]
fn a_second_turn_prefills_only_its_tokens_and_matches_recomputing() {
    let mut g = smollm2();
    let first = chat(&mut g, FIRST, true);
    assert!(!first.ids.is_empty());
    assert_eq!((first.prefilled, first.reused), (first.prompt_ids.len(), 0));
    let (held, total) = (g.position(), sequence_len(&g));

    let second = chat(&mut g, SECOND, true);
    assert_eq!(second.reused, held, "the first turn comes from the cache");
    assert_eq!(
        second.prefilled,
        total - held + second.prompt_ids.len(),
        "only the new turn (and the first reply's pending token) is computed"
    );

    // The conversation's ids are those of the whole conversation tokenized at once.
    let tokenizer = g.tokenizer();
    assert_eq!(
        tokenizer.encode(&first.text).unwrap(),
        first.ids,
        "the rule's condition: the reply's text tokenizes back to its ids"
    );
    let message = |role, content| ChatMessage { role, content };
    let whole = tokenizer.chat_template().unwrap().render(
        &[
            message(Role::User, FIRST),
            message(Role::Assistant, &first.text),
            message(Role::User, SECOND),
        ],
        true,
    );
    let tokens = g.snapshot().unwrap().tokens;
    assert_eq!(
        tokens[..tokens.len() - second.ids.len()],
        tokenizer.encode_prompt(&whole, true).unwrap()
    );

    // From scratch: the same ids, everything computed.
    g.reset();
    let again = chat(&mut g, FIRST, false);
    assert_eq!(again.ids, first.ids);
    assert_eq!((again.prefilled, again.reused), (again.prompt_ids.len(), 0));
    let recomputed = chat(&mut g, SECOND, false);
    assert_eq!(recomputed.ids, second.ids);
    assert_eq!(
        (recomputed.prefilled, recomputed.reused),
        (second.prefilled + second.reused, 0)
    );

    // A new conversation with the same (default) system prompt starts from its cache.
    g.reset();
    let restarted = chat(&mut g, FIRST, true);
    assert_eq!(restarted.ids, first.ids);
    assert!(restarted.reused > 0, "the system prompt's cache");
    assert_eq!(
        restarted.prefilled + restarted.reused,
        restarted.prompt_ids.len()
    );

    // Another system prompt starts another conversation, computed afresh.
    let pirate = ChatOptions {
        run: RunOptions {
            system_prompt: Some("You are a pirate.".into()),
            ..turn(true).run
        },
        reuse: true,
    };
    let other = g.chat(FIRST, &pirate, |_| {}).unwrap();
    assert_eq!(other.reused, 0);
    assert_eq!(sequence_len(&g), other.prompt_ids.len() + other.ids.len());
}

#[test]
fn chat_without_a_known_template_is_a_clear_error() {
    let mut g = common::generator(
        "tiny-llama",
        BackendKind::default(),
        CacheOptions::default(),
    );
    g.generate("Once", &common::greedy(2), |_| {}).unwrap();
    let position = g.position();
    let err = g
        .chat("Hi", &ChatOptions::default(), |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot chat"), "{err}");
    assert_eq!(g.position(), position, "the failed call changed nothing");
}

/// A reply stopped early (the caller stops stepping, as the page's Stop does) stays in the
/// conversation as far as it got: the next turn is what it is after a reply that maxTokens
/// cut at the same length.
#[test]
fn a_reply_stopped_early_is_continued_like_one_cut_by_max_tokens() {
    let mut g = smollm2();
    let first = g.chat_prefill(FIRST, &turn(true)).unwrap().unwrap();
    let second = g.step().unwrap().unwrap();
    let stopped = g.finish().unwrap();
    assert_eq!(stopped.ids, [first.id, second.id]);
    let after_stop = chat(&mut g, SECOND, true);

    let mut h = smollm2();
    let mut cut_at_two = turn(true);
    cut_at_two.run.max_new_tokens = 2;
    let cut = h.chat(FIRST, &cut_at_two, |_| {}).unwrap();
    assert_eq!(cut.ids, stopped.ids);
    let after_cut = chat(&mut h, SECOND, true);
    assert_eq!(
        (after_stop.prefilled, after_stop.reused),
        (after_cut.prefilled, after_cut.reused)
    );
    assert_eq!(after_stop.ids, after_cut.ids);
    assert_eq!(sequence_len(&g), sequence_len(&h));
}

#[test]
fn a_snapshot_between_turns_restored_continues_its_conversation() {
    let pirate = ChatOptions {
        run: RunOptions {
            system_prompt: Some("You are a pirate.".into()),
            ..turn(true).run
        },
        reuse: true,
    };
    // With its own system prompt and with the template's: the snapshot keeps either.
    for options in [pirate, turn(true)] {
        let mut g = smollm2();
        g.chat(FIRST, &options, |_| {}).unwrap();
        let snapshot = g.snapshot().unwrap();
        let held = g.position();
        let uninterrupted = g.chat(SECOND, &options, |_| {}).unwrap();
        assert_eq!(uninterrupted.reused, held);

        g.restore(&snapshot).unwrap();
        let again = g.chat(SECOND, &options, |_| {}).unwrap();
        assert_eq!(again.ids, uninterrupted.ids, "the same generator");
        assert_eq!(
            (again.reused, again.prefilled),
            (held, uninterrupted.prefilled)
        );

        let mut fresh = smollm2();
        fresh.restore_bytes(&snapshot.to_bytes()).unwrap();
        let resumed = fresh.chat(SECOND, &options, |_| {}).unwrap();
        assert_eq!(resumed.ids, uninterrupted.ids, "a new generator");
        assert_eq!(resumed.reused, held);
    }

    // A snapshot of a sequence that is no chat: the next turn starts a conversation.
    let mut g = smollm2();
    g.generate("Once upon a time", &common::greedy(4), |_| {})
        .unwrap();
    let snapshot = g.snapshot().unwrap();
    let mut fresh = smollm2();
    fresh.restore(&snapshot).unwrap();
    let first = fresh.chat(FIRST, &turn(true), |_| {}).unwrap();
    assert_eq!(first.reused, 0);
    assert_eq!(
        sequence_len(&fresh),
        first.prompt_ids.len() + first.ids.len()
    );
}

#[test]
fn a_turn_past_max_seq_len_counts_the_conversation_so_far() {
    let mut g = smollm2();
    chat(&mut g, FIRST, true);
    let before = g.snapshot().unwrap();
    let err = g
        .chat(&"word ".repeat(240), &turn(true), |_| {})
        .unwrap_err()
        .to_string();
    let says = format!("({} so far + ", before.tokens.len());
    assert!(
        err.starts_with("context full: ") && err.contains(&says),
        "{err}"
    );
    assert_eq!(g.snapshot().unwrap(), before, "nothing changed");
}

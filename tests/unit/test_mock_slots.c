/*
 * Unit tests for the llamacpp quirk's slot cache (sb/mock_slots.h): which slot a prompt lands on
 * (the similar one when over half the prompt is shared, else the least recently used), how much
 * is reused (never the last prompt token), what a slot holds after its task, and erase.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "sb/mock_slots.h"

/* Runs one task on the slots: returns the slot and its reused tokens in *cached. */
static int run(struct sb_mock_slots *s, const char *prompt, long long decoded, long long *cached)
{
    long long tokens = (long long)strlen(prompt) / 4;
    int i = sb_mock_slots_take(s, prompt, strlen(prompt), tokens, 1, cached);
    assert_true(i >= 0);
    sb_mock_slots_put(s, i, decoded);
    return i;
}

static void test_slot_choice(void **state)
{
    (void)state;
    /* 16-byte prompts: 4 tokens each */
    static const struct {
        const char *prompts[3]; /* run in order on 2 slots */
        int want_slot;          /* of the last one */
        long long want_cached;
    } cases[] = {
        /* identical: the same slot, all but the last token reused */
        {{"aaaabbbbccccdddd", "aaaabbbbccccdddd", NULL}, 0, 3},
        /* a different prompt goes to the least recently used (empty) slot */
        {{"aaaabbbbccccdddd", "zzzzyyyyxxxxwwww", NULL}, 1, 0},
        /* back to the first: the similar slot wins over the least recently used one */
        {{"aaaabbbbccccdddd", "zzzzyyyyxxxxwwww", "aaaabbbbcccceeee"}, 0, 3},
        /* half shared is not over half: the least recently used slot, reusing its own prefix */
        {{"aaaabbbbccccdddd", "zzzzyyyyxxxxwwww", "aaaabbbbqqqqrrrr"}, 0, 2},
        /* nothing shared with either */
        {{"aaaabbbbccccdddd", "zzzzyyyyxxxxwwww", "mmmmnnnnoooopppp"}, 0, 0},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct sb_mock_slots s;
        assert_int_equal(sb_mock_slots_init(&s, 2), 0);
        int slot = -1;
        long long cached = -1;
        for (int k = 0; k < 3 && cases[c].prompts[k]; k++)
            slot = run(&s, cases[c].prompts[k], 2, &cached);
        assert_int_equal(slot, cases[c].want_slot);
        assert_int_equal(cached, cases[c].want_cached);
        sb_mock_slots_release(&s);
    }
}

/* A prompt of token ids reaches the slots without text (NULL, 0 bytes): it takes a slot and
   reuses nothing. tests/fuzz/fuzz_mock.c found the memcpy from NULL that UBSan (make asan)
   reports here. */
static void test_token_id_prompt(void **state)
{
    (void)state;
    struct sb_mock_slots s;
    assert_int_equal(sb_mock_slots_init(&s, 1), 0);
    long long cached = -1;
    int i = sb_mock_slots_take(&s, NULL, 0, 3, 1, &cached);
    assert_int_equal(i, 0);
    assert_int_equal(cached, 0);
    sb_mock_slots_put(&s, i, 2);
    /* and again, now that the slot holds the empty prompt */
    i = sb_mock_slots_take(&s, NULL, 0, 3, 2, &cached);
    assert_int_equal(i, 0);
    assert_int_equal(cached, 0);
    sb_mock_slots_release(&s);
}

static void test_hold_and_erase(void **state)
{
    (void)state;
    struct sb_mock_slots s;
    assert_int_equal(sb_mock_slots_init(&s, 2), 0);
    long long cached;
    int i = sb_mock_slots_take(&s, "aaaabbbbccccdddd", 16, 4, 7, &cached);
    assert_int_equal(i, 0);
    assert_true(s.v[0].busy);
    assert_int_equal(sb_mock_slots_erase(&s, 0), -1); /* busy */
    assert_int_equal(sb_mock_slots_erase(&s, 2), -1); /* no such slot */
    sb_mock_slots_put(&s, i, 5);
    /* the prompt and every generated token but the last */
    assert_int_equal(s.v[0].n_tokens, 4 + 4);
    assert_int_equal(sb_mock_slots_tokens(&s), 8);
    assert_int_equal(sb_mock_slots_erase(&s, 0), 8);
    assert_int_equal(sb_mock_slots_tokens(&s), 0);
    i = sb_mock_slots_take(&s, "aaaabbbbccccdddd", 16, 4, 8, &cached);
    assert_int_equal(cached, 0);
    sb_mock_slots_put(&s, i, 1);
    assert_int_equal(sb_mock_slots_erase_all(&s), 4);
    sb_mock_slots_release(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slot_choice),
        cmocka_unit_test(test_hold_and_erase),
        cmocka_unit_test(test_token_id_prompt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

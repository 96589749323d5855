/*
 * names.c - session name generators (SPEC §2.5, §2.6).
 *
 * The word lists are copied verbatim, in order, from SPEC §2.5; their sizes
 * are part of the contract (127 x 37) and checked at compile time.
 */
#include "core/names.h"

#include "core/str.h"

const char *const lk_name_adjectives[LK_N_ADJECTIVES] = {
    "able",  "acid",   "adept", "aged",  "airy",   "ajar",  "awry",   "back",   "bare",  "beefy",
    "big",   "blond",  "blue",  "bold",  "bossy",  "brave", "brief",  "broad",  "busy",  "calm",
    "cheap", "chill",  "clean", "coy",   "crazy",  "curvy", "cute",   "damp",   "dear",  "deep",
    "dizzy", "dopey",  "drunk", "dry",   "dull",   "dusty", "easy",   "edgy",   "fiery", "fancy",
    "fat",   "few",    "fine",  "flat",  "foxy",   "fresh", "frisky", "full",   "fun",   "glad",
    "grand", "great",  "green", "happy", "hard",   "hazy",  "icy",    "jolly",  "jumpy", "kind",
    "lame",  "late",   "leafy", "light", "loyal",  "lucky", "mad",    "mean",   "neat",  "new",
    "nice",  "noble",  "odd",   "old",   "perky",  "proud", "quick",  "quiet",  "rare",  "red",
    "ripe",  "rotten", "safe",  "salty", "sandy",  "scary", "shaky",  "sharp",  "short", "shy",
    "silly", "sleek",  "slim",  "slow",  "small",  "smart", "smug",   "snappy", "soggy", "sour",
    "spicy", "stale",  "stark", "steep", "sticky", "stout", "super",  "sweet",  "sunny", "tall",
    "tame",  "tart",   "tasty", "tepid", "tiny",   "tipsy", "tough",  "true",   "vague", "vivid",
    "warm",  "weak",   "wild",  "wise",  "wooden", "witty", "zesty"
};

const char *const lk_name_animals[LK_N_ANIMALS] = {
    "ant",   "bat",   "bison", "camel", "cat",   "cow",   "crab",  "deer",  "dog",   "duck",
    "eagle", "fish",  "fox",   "frog",  "gecko", "goat",  "goose", "hare",  "horse", "koala",
    "lion",  "lynx",  "mole",  "mouse", "otter", "panda", "pig",   "prawn", "puma",  "quail",
    "sheep", "sloth", "snake", "swan",  "tiger", "wolf",  "zebra"
};

_Static_assert(sizeof(lk_name_adjectives) / sizeof(lk_name_adjectives[0]) == 127, "adjectives");
_Static_assert(sizeof(lk_name_animals) / sizeof(lk_name_animals[0]) == 37, "animals");

void lk_name_random_animal(const struct lk_rng *rng, struct lk_buf *out)
{
    lk_buf_adds(out, lk_name_adjectives[lk_rng_below(rng, LK_N_ADJECTIVES)]);
    lk_buf_addch(out, '-');
    lk_buf_adds(out, lk_name_animals[lk_rng_below(rng, LK_N_ANIMALS)]);
}

void lk_name_random_six_char(const struct lk_rng *rng, struct lk_buf *out)
{
    /* Drawn from 62 symbols and lower-cased afterwards, as the original does,
     * so each letter is twice as likely as each digit. */
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    for (int i = 0; i < 6; i++)
        lk_buf_addch(out, lk_ascii_lower(alphabet[lk_rng_below(rng, sizeof(alphabet) - 1)]));
}

void lk_name_hash(const struct lk_session *s, struct lk_buf *out)
{
    char hex[65];
    lk_session_hash(s, hex);
    lk_buf_add(out, hex, 6);
}

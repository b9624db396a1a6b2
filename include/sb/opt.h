/*
 * The option table: each command declares its options once (name, YAML key, flag spellings, type,
 * storage offset, default, range, help) and this module uses that one table to fill defaults, read
 * a YAML config, parse the command line, print --help and write the resolved config.yaml.
 *
 * Storage by type, at `offset` inside the command's own struct:
 *   SB_OPT_BOOL bool, SB_OPT_INT long long, SB_OPT_DOUBLE double, SB_OPT_SIZE uint64_t (bytes, with
 *   k/M/G/T suffixes), SB_OPT_ENUM int (index into `choices`), SB_OPT_STR and SB_OPT_LIST char *
 *   (owned by the struct; LIST holds the items joined by ','; freed by sb_opt_release()),
 * SB_OPT_JSON char * holding a JSON object's text (from a YAML mapping, or a JSON flag value).
 */
#ifndef SB_OPT_H
#define SB_OPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "sb/err.h"

enum sb_opt_type {
    SB_OPT_BOOL,
    SB_OPT_INT,
    SB_OPT_DOUBLE,
    SB_OPT_SIZE,
    SB_OPT_ENUM,
    SB_OPT_STR,
    SB_OPT_LIST,
    SB_OPT_JSON, /* char *: a JSON object's text; a YAML mapping or a JSON flag value */
};

#define SB_OPT_SECRET 0x1u /* never written into a resolved config */
#define SB_OPT_NOYAML 0x2u /* command line only */
#define SB_OPT_CONFIG 0x4u /* a STR option naming the YAML file read before the flags apply */

struct sb_opt {
    const char *key; /* YAML path, sections joined by '.', e.g. "run.concurrency"; NULL: no YAML */
    const char *const *key_aliases; /* NULL-terminated other YAML paths read into the same option
                                       (the shapes of older config files); never written */
    const char *flag;  /* long flag without dashes, e.g. "max-num-seqs"; NULL: YAML only. The
                          same name with '_' for '-' is accepted too */
    const char *alias; /* one more accepted flag spelling (kept for old scripts), or NULL */
    enum sb_opt_type type;
    size_t offset;
    const char *def;     /* default written as on the command line; NULL: zero / NULL */
    const char *argname; /* placeholder in --help, e.g. "N" */
    const char *help;
    const char *const *choices; /* SB_OPT_ENUM: NULL-terminated names */
    double min, max;            /* numeric range checked when min < max (inclusive) */
    unsigned flags;
    /* SB_OPT_STR and SB_OPT_LIST (the whole comma-separated value): the value's own syntax (a
       distribution, a policy, a URL), checked as the value is set so a config's error names its
       file and line; NULL: none. The message names the flag, as the same check after parsing did;
       the YAML loader adds the key. */
    int (*check)(const char *value, struct sb_err *err);
};

/* What sb_opt_parse() leaves besides the filled struct. Pointers borrow from argv. */
struct sb_opt_result {
    bool help; /* --help or -h was given */
    int npositional;
    char **positional; /* malloc'ed array of argv pointers; free() it */
};

/* Fills every option of obj with its default. Returns 0 or -1 (a bad default is a programming
 * error). */
int sb_opt_defaults(const struct sb_opt *opts, size_t n, void *obj, struct sb_err *err);

/* Applies one textual value to an option, checking type and range. `what` names it in messages. */
int sb_opt_set(const struct sb_opt *o, void *obj, const char *value, const char *what,
               struct sb_err *err);

/*
 * Reads the YAML file at path into obj. Every key must be declared; errors name the file, the line
 * and the key ("cannot parse 'x.yaml' line 12: unknown key 'concurency' (did you mean ...)").
 */
int sb_opt_load_yaml(const struct sb_opt *opts, size_t n, void *obj, const char *path,
                     struct sb_err *err);

/*
 * The whole sequence for a command: defaults, then the YAML file named by the SB_OPT_CONFIG option
 * (if given on the command line), then the flags, so flags override the config. argv[0] is the
 * command name. On error err names the offending flag or key; the caller exits 2.
 */
int sb_opt_parse(const struct sb_opt *opts, size_t n, void *obj, int argc, char **argv,
                 struct sb_opt_result *res, struct sb_err *err);

/* Prints the option list for --help. */
void sb_opt_print_help(const struct sb_opt *opts, size_t n, FILE *f);

/* Writes the resolved options as YAML (sections nested, secrets left out). Returns 0 or -1. */
int sb_opt_write_yaml(const struct sb_opt *opts, size_t n, const void *obj, FILE *f);

/* Frees the strings an options struct owns. */
void sb_opt_release(const struct sb_opt *opts, size_t n, void *obj);

/* Looks an option up by YAML key or flag spelling; NULL when absent. */
const struct sb_opt *sb_opt_find_key(const struct sb_opt *opts, size_t n, const char *key);
const struct sb_opt *sb_opt_find_flag(const struct sb_opt *opts, size_t n, const char *flag);

struct yaml_document_s; /* libyaml's yaml_document_t */

/*
 * Parses the YAML file at path into *doc (free it with yaml_document_delete). Returns 0; 1 when
 * missing_ok and the file does not exist (doc untouched); or -1 with err: "cannot open <what>'path'
 * ..." (what is e.g. "config " or "") or "cannot parse 'path' line N: problem".
 */
int sb_yaml_load_file(const char *path, const char *what, bool missing_ok,
                      struct yaml_document_s *doc, struct sb_err *err);

#endif

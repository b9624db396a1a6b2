/*
 * Open-loop arrival processes: inter-arrival gaps for a target rate, drawn from a seeded generator.
 * Plug-ins are const ops tables (poisson, constant, gamma); sb_arrival_find() picks one by name.
 */
#ifndef SB_ARRIVAL_H
#define SB_ARRIVAL_H

#include <stdint.h>

#include "sb/util.h"

struct sb_arrival {
    const struct sb_arrival_ops *ops;
    double rate;  /* requests per second */
    double shape; /* gamma shape k (burstiness); 1 = exponential */
    struct sb_rng rng;
};

struct sb_arrival_ops {
    const char *name;
    /* The next gap in nanoseconds. */
    uint64_t (*next_gap_ns)(struct sb_arrival *a);
};

extern const struct sb_arrival_ops sb_arrival_poisson, sb_arrival_constant, sb_arrival_gamma;

/* The ops named `name`, or NULL. */
const struct sb_arrival_ops *sb_arrival_find(const char *name);

void sb_arrival_init(struct sb_arrival *a, const struct sb_arrival_ops *ops, double rate,
                     double shape, uint64_t seed);

static inline uint64_t sb_arrival_next_gap_ns(struct sb_arrival *a)
{
    return a->ops->next_gap_ns(a);
}

/* A Gamma(shape, 1) variate (Marsaglia-Tsang); exposed for tests. */
double sb_gamma_variate(struct sb_rng *r, double shape);

#endif

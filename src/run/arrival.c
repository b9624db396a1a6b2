/* Open-loop arrival processes (see sb/arrival.h): constant, Poisson and gamma-distributed gaps. */
#include "sb/arrival.h"

#include <math.h>
#include <string.h>

static uint64_t to_ns(double seconds)
{
    return seconds <= 0 ? 0 : (uint64_t)llround(seconds * 1e9);
}

static uint64_t poisson_gap(struct sb_arrival *a)
{
    double u = sb_rng_uniform(&a->rng);
    return to_ns(-log1p(-u) / a->rate);
}

static uint64_t constant_gap(struct sb_arrival *a)
{
    return to_ns(1.0 / a->rate);
}

static double normal_variate(struct sb_rng *r)
{
    /* Box-Muller; one of the pair is enough here. */
    double u1 = sb_rng_uniform(r), u2 = sb_rng_uniform(r);
    return sqrt(-2.0 * log1p(-u1)) * cos(2.0 * M_PI * u2);
}

double sb_gamma_variate(struct sb_rng *r, double shape)
{
    if (shape < 1.0) {
        /* Boost: Gamma(k) = Gamma(k + 1) * U^(1/k). */
        double u = sb_rng_uniform(r);
        return sb_gamma_variate(r, shape + 1.0) * pow(1.0 - u, 1.0 / shape);
    }
    double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = normal_variate(r);
            v = 1.0 + c * x;
        } while (v <= 0);
        v = v * v * v;
        double u = sb_rng_uniform(r);
        if (u < 1.0 - 0.0331 * x * x * x * x)
            return d * v;
        if (log(u) < 0.5 * x * x + d * (1.0 - v + log(v)))
            return d * v;
    }
}

static uint64_t gamma_gap(struct sb_arrival *a)
{
    /* Mean gap 1/rate: scale = 1 / (rate * k). Coefficient of variation 1/sqrt(k). */
    return to_ns(sb_gamma_variate(&a->rng, a->shape) / (a->rate * a->shape));
}

const struct sb_arrival_ops sb_arrival_poisson = {.name = "poisson", .next_gap_ns = poisson_gap};
const struct sb_arrival_ops sb_arrival_constant = {.name = "constant", .next_gap_ns = constant_gap};
const struct sb_arrival_ops sb_arrival_gamma = {.name = "gamma", .next_gap_ns = gamma_gap};

static const struct sb_arrival_ops *const all_arrivals[] = {
    &sb_arrival_poisson, &sb_arrival_constant, &sb_arrival_gamma};

const struct sb_arrival_ops *sb_arrival_find(const char *name)
{
    for (size_t i = 0; i < SB_ARRAY_SIZE(all_arrivals); i++)
        if (strcmp(all_arrivals[i]->name, name) == 0)
            return all_arrivals[i];
    return NULL;
}

void sb_arrival_init(struct sb_arrival *a, const struct sb_arrival_ops *ops, double rate,
                     double shape, uint64_t seed)
{
    a->ops = ops;
    a->rate = rate > 0 ? rate : 1;
    a->shape = shape > 0 ? shape : 1;
    sb_rng_seed(&a->rng, seed);
}

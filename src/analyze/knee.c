/*
 * The numeric rules of the analysis, as pure functions with no I/O so the unit tests can drive
 * them from tables: the Test Plan §2 knee rule that defines U_work (with a step whose requests
 * fail too often counted as past the knee: a server that answers 429 fast is not keeping up),
 * the saturation knee read from the throughput curve that is printed beside it (the rule is blind
 * on a server whose p99/p50 is above its ratio from the first step),
 * Pearson's r with its least-squares line (H7), and the coefficient of variation behind the
 * CoV(p99) gate. Every one takes NAN as "not available" and leaves such values out rather than
 * letting them poison a sum.
 */
#include <math.h>
#include <stdint.h>

#include "sb/analyze_out.h"

/* Whether a sorts before b: by x, NAN x last; stable because callers only move on "before". */
static bool step_before(const struct sb_knee_step *a, const struct sb_knee_step *b)
{
    if (isnan(a->x))
        return false;
    if (isnan(b->x))
        return true;
    return a->x < b->x;
}

static void steps_sort(struct sb_knee_step *steps, size_t n)
{
    /* Insertion sort: sweeps have tens of steps, and it is stable. */
    for (size_t i = 1; i < n; i++) {
        struct sb_knee_step s = steps[i];
        size_t j = i;
        while (j > 0 && step_before(&s, &steps[j - 1])) {
            steps[j] = steps[j - 1];
            j--;
        }
        steps[j] = s;
    }
}

void sb_knee_find(struct sb_knee_step *steps, size_t n, double k, double max_error_rate,
                  struct sb_knee *out)
{
    steps_sort(steps, n);
    out->status = SB_KNEE_NO_STEPS;
    out->knee = out->uwork = NAN;
    out->knee_idx = out->uwork_idx = SIZE_MAX;

    size_t prev = SIZE_MAX;      /* the last step that took part */
    size_t prev_prev = SIZE_MAX; /* the one before it */
    size_t valid = 0;
    for (size_t i = 0; i < n; i++) {
        struct sb_knee_step *s = &steps[i];
        s->ratio = s->p50 > 0 && !isnan(s->p99) ? s->p99 / s->p50 : NAN;
        /* NAN compares false: an unknown rate, or no maximum, never makes a step over. */
        s->errors_over = !isnan(s->x) && s->error_rate > max_error_rate;
        bool latency = !isnan(s->p50) && !isnan(s->p99);
        if (isnan(s->x) || (!latency && !s->errors_over)) {
            s->over = -1;
            continue;
        }
        s->over = s->errors_over || (latency && s->p99 > k * s->p50) ? 1 : 0;
        valid++;
        if (out->knee_idx == SIZE_MAX && prev != SIZE_MAX && s->over && steps[prev].over) {
            out->knee_idx = prev; /* two over in a row: the knee is the first of them */
            out->uwork_idx = prev_prev;
        } else if (out->knee_idx == SIZE_MAX && s->errors_over) {
            out->knee_idx = i; /* too many failures: past the knee by itself */
            out->uwork_idx = prev;
        }
        prev_prev = prev;
        prev = i;
    }
    if (valid == 0)
        return;
    if (out->knee_idx == SIZE_MAX) {
        out->status = SB_KNEE_NONE;
        out->uwork_idx = prev;
        out->uwork = steps[prev].x;
        return;
    }
    out->knee = steps[out->knee_idx].x;
    if (out->uwork_idx == SIZE_MAX) {
        out->status = SB_KNEE_AT_FIRST;
        return;
    }
    out->status = SB_KNEE_FOUND;
    out->uwork = steps[out->uwork_idx].x;
}

void sb_saturation_find(struct sb_knee_step *steps, size_t n, double g, struct sb_saturation *out)
{
    steps_sort(steps, n);
    *out = (struct sb_saturation){SB_SAT_NO_STEPS, NAN, SIZE_MAX, NAN, NAN};
    size_t prev = SIZE_MAX, used = 0;
    for (size_t i = 0; i < n; i++) {
        struct sb_knee_step *s = &steps[i];
        s->saturated = false;
        if (!isfinite(s->x) || !isfinite(s->rps) || !isfinite(s->p50))
            continue;
        used++;
        if (prev != SIZE_MAX && out->idx == SIZE_MAX) {
            const struct sb_knee_step *p = &steps[prev];
            /* Products, not ratios: a gain of exactly g still counts as rising. */
            if (s->rps < (1 + g) * p->rps && s->p50 > (1 + g) * p->p50) {
                out->idx = prev;
                out->x = p->x;
                out->gain = p->rps > 0 ? s->rps / p->rps - 1 : NAN;
                out->lat_growth = p->p50 > 0 ? s->p50 / p->p50 - 1 : NAN;
            }
        }
        prev = i;
    }
    if (used < 2)
        return;
    if (out->idx == SIZE_MAX) {
        out->status = SB_SAT_NONE;
        return;
    }
    out->status = SB_SAT_FOUND;
    steps[out->idx].saturated = true;
}

const char *sb_saturation_status_name(enum sb_sat_status s)
{
    switch (s) {
    case SB_SAT_FOUND:
        return "saturation";
    case SB_SAT_NONE:
        return "no_saturation";
    case SB_SAT_NO_STEPS:
        break;
    }
    return "no_steps";
}

const char *sb_knee_status_name(enum sb_knee_status s)
{
    switch (s) {
    case SB_KNEE_FOUND:
        return "knee";
    case SB_KNEE_AT_FIRST:
        return "knee_at_first_step";
    case SB_KNEE_NONE:
        return "no_knee";
    case SB_KNEE_NO_STEPS:
        break;
    }
    return "no_steps";
}

double sb_mean_finite(const double *v, size_t n)
{
    double sum = 0;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!isnan(v[i])) {
            sum += v[i];
            m++;
        }
    return m ? sum / (double)m : NAN;
}

double sb_cov(const double *v, size_t n)
{
    double mean = sb_mean_finite(v, n);
    size_t m = 0;
    double ss = 0;
    for (size_t i = 0; i < n; i++)
        if (!isnan(v[i])) {
            ss += (v[i] - mean) * (v[i] - mean);
            m++;
        }
    if (m < 2 || mean == 0)
        return NAN;
    return sqrt(ss / (double)(m - 1)) / fabs(mean);
}

void sb_fit_linear(const double *x, const double *y, size_t n, struct sb_fit *out)
{
    out->n = 0;
    out->r = out->a = out->b = NAN;
    /* Two passes (means, then centred sums) keep large offsets from cancelling digits away. */
    double sx = 0, sy = 0;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!isnan(x[i]) && !isnan(y[i])) {
            sx += x[i];
            sy += y[i];
            m++;
        }
    out->n = m;
    if (m < 2)
        return;
    double mx = sx / (double)m, my = sy / (double)m;
    double sxx = 0, syy = 0, sxy = 0;
    for (size_t i = 0; i < n; i++)
        if (!isnan(x[i]) && !isnan(y[i])) {
            double dx = x[i] - mx, dy = y[i] - my;
            sxx += dx * dx;
            syy += dy * dy;
            sxy += dx * dy;
        }
    if (sxx == 0)
        return;
    out->b = sxy / sxx;
    out->a = my - out->b * mx;
    if (syy > 0)
        out->r = sxy / sqrt(sxx * syy);
}

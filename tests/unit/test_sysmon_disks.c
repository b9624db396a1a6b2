/*
 * Unit tests for the disks `run --sysmon` watches (sb_sysmon_disk_list): the first one is the
 * one sysmon.jsonl names "nvme" and analyze reads as NVMe r/s, rMB/s and r_await (H2, H4, H7, H8),
 * so with a KV tier-2 path it must be the disk holding that path, not the one holding the results.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "sb/procfs.h"

static void test_tier2_disk_first(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(sb_sysmon_disk_list("nvme0n1", "sda", out, sizeof(out)), 0);
    assert_string_equal(out, "nvme0n1,sda");
}

static void test_same_disk_once(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(sb_sysmon_disk_list("vda", "vda", out, sizeof(out)), 0);
    assert_string_equal(out, "vda");
}

static void test_either_missing(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(sb_sysmon_disk_list("", "sda", out, sizeof(out)), 0);
    assert_string_equal(out, "sda");
    assert_int_equal(sb_sysmon_disk_list("nvme0n1", "", out, sizeof(out)), 0);
    assert_string_equal(out, "nvme0n1");
    assert_int_equal(sb_sysmon_disk_list(NULL, NULL, out, sizeof(out)), 0);
    assert_string_equal(out, "");
}

static void test_too_small(void **state)
{
    (void)state;
    char out[8];
    assert_int_equal(sb_sysmon_disk_list("nvme0n1", "sda", out, sizeof(out)), -1);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tier2_disk_first),
        cmocka_unit_test(test_same_disk_once),
        cmocka_unit_test(test_either_missing),
        cmocka_unit_test(test_too_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

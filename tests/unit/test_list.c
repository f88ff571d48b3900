#include "pdstrace/list.h"

#include <criterion/criterion.h>

TestSuite(list, .timeout = 10);

struct item {
    int value;
    struct list_node link;
};

/* Writes the values in list order into out; returns how many. */
static int values(struct list_node *head, int *out, int max)
{
    int n = 0;
    for (struct list_node *p = head->next; p != head && n < max; p = p->next)
        out[n++] = LIST_ENTRY(p, struct item, link)->value;
    return n;
}

Test(list, starts_empty_and_unlinked)
{
    struct list_node head;
    struct item a = {.value = 1};
    list_init(&head);
    list_init(&a.link);
    cr_assert(list_is_empty(&head));
    cr_assert_null(list_first(&head));
    cr_assert_null(list_last(&head));
    cr_assert_not(list_is_linked(&a.link));
}

Test(list, pushes_at_both_ends_in_order)
{
    struct list_node head;
    struct item it[3] = {{.value = 1}, {.value = 2}, {.value = 3}};
    list_init(&head);
    list_push_tail(&head, &it[1].link);
    list_push_tail(&head, &it[2].link);
    list_push_head(&head, &it[0].link);
    int v[4];
    cr_assert_eq(values(&head, v, 4), 3);
    cr_assert(v[0] == 1 && v[1] == 2 && v[2] == 3);
    cr_assert_eq(LIST_ENTRY(list_first(&head), struct item, link)->value, 1);
    cr_assert_eq(LIST_ENTRY(list_last(&head), struct item, link)->value, 3);
    cr_assert(list_is_linked(&it[1].link));
}

Test(list, remove_unlinks_once_and_twice_is_harmless)
{
    struct list_node head;
    struct item it[3] = {{.value = 1}, {.value = 2}, {.value = 3}};
    list_init(&head);
    for (int i = 0; i < 3; i++)
        list_push_tail(&head, &it[i].link);
    list_remove(&it[1].link);
    cr_assert_not(list_is_linked(&it[1].link));
    list_remove(&it[1].link);
    int v[4];
    cr_assert_eq(values(&head, v, 4), 2);
    cr_assert(v[0] == 1 && v[1] == 3);
    list_remove(&it[0].link);
    list_remove(&it[2].link);
    cr_assert(list_is_empty(&head));
}

Test(list, foreach_safe_may_remove_the_current_node)
{
    struct list_node head, *node, *tmp;
    struct item it[4] = {{.value = 1}, {.value = 2}, {.value = 3}, {.value = 4}};
    list_init(&head);
    for (int i = 0; i < 4; i++)
        list_push_tail(&head, &it[i].link);
    int seen = 0;
    LIST_FOREACH_SAFE(node, tmp, &head)
    {
        struct item *item = LIST_ENTRY(node, struct item, link);
        seen++;
        if (item->value % 2 == 0)
            list_remove(node);
    }
    int v[4];
    cr_assert_eq(seen, 4);
    cr_assert_eq(values(&head, v, 4), 2);
    cr_assert(v[0] == 1 && v[1] == 3);
}

Test(list, splice_moves_everything_in_order)
{
    struct list_node a, b;
    struct item it[4] = {{.value = 1}, {.value = 2}, {.value = 3}, {.value = 4}};
    list_init(&a);
    list_init(&b);
    list_splice_tail(&a, &b);
    cr_assert(list_is_empty(&a));
    list_push_tail(&a, &it[0].link);
    list_push_tail(&a, &it[1].link);
    list_push_tail(&b, &it[2].link);
    list_push_tail(&b, &it[3].link);
    list_splice_tail(&a, &b);
    cr_assert(list_is_empty(&b));
    int v[5];
    cr_assert_eq(values(&a, v, 5), 4);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(v[i], i + 1);
    cr_assert_eq(LIST_ENTRY(list_last(&a), struct item, link)->value, 4);
}

#ifndef PDS_CORE_LIST_H
#define PDS_CORE_LIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The one intrusive doubly-linked list of the project (h2o's linklist.h, libuv's queue.h):
 * a struct list_node is embedded in each element, and a list is a head node that links
 * to itself when empty. No allocation, O(1) insert and remove, and an element can tell
 * whether it is linked, so removing it twice is harmless. Elements belong to their owner,
 * never to the list. */
struct list_node {
    struct list_node *prev, *next;
};

/* The element that holds node: LIST_ENTRY(n, struct conn, link), or with a const type for
 * a const node. The arithmetic goes through uintptr_t so that either works. */
#define LIST_ENTRY(node, type, member) ((type *)(void *)((uintptr_t)(node)-offsetof(type, member)))

/* Visits every node; the body may remove (and free) the current one, not others. */
#define LIST_FOREACH_SAFE(node, tmp, head)                                                         \
    for ((node) = (head)->next, (tmp) = (node)->next; (node) != (head);                            \
         (node) = (tmp), (tmp) = (node)->next)

/* Makes head an empty list (or node an unlinked element). */
static inline void list_init(struct list_node *head)
{
    head->prev = head->next = head;
}

static inline bool list_is_empty(const struct list_node *head)
{
    return head->next == head;
}

/* Whether an element initialised with list_init is in some list. */
static inline bool list_is_linked(const struct list_node *node)
{
    return node->next != node;
}

/* Links node just before pos; with pos the head, that is the tail of the list. */
static inline void list_insert_before(struct list_node *pos, struct list_node *node)
{
    node->prev = pos->prev;
    node->next = pos;
    pos->prev->next = node;
    pos->prev = node;
}

static inline void list_push_tail(struct list_node *head, struct list_node *node)
{
    list_insert_before(head, node);
}

static inline void list_push_head(struct list_node *head, struct list_node *node)
{
    list_insert_before(head->next, node);
}

/* Unlinks node, which then reads as unlinked; a no-op for an unlinked node. */
static inline void list_remove(struct list_node *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    list_init(node);
}

/* The first or last node, or NULL for an empty list. */
static inline struct list_node *list_first(const struct list_node *head)
{
    return list_is_empty(head) ? NULL : head->next;
}

static inline struct list_node *list_last(const struct list_node *head)
{
    return list_is_empty(head) ? NULL : head->prev;
}

/* Moves every node of from to the tail of to, leaving from empty. */
static inline void list_splice_tail(struct list_node *to, struct list_node *from)
{
    if (list_is_empty(from))
        return;
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    list_init(from);
}

#endif

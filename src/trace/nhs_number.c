#include "pdstrace/nhs_number.h"

#include <string.h>

#include "pdstrace/err.h"

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* True when s starts with n ASCII digits; a shorter string stops at its NUL. */
static bool leading_digits(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (!is_digit(s[i]))
            return false;
    return true;
}

int nhs_number_check_digit(const char *first9)
{
    if (first9 == NULL || !leading_digits(first9, 9))
        return -1;
    int sum = 0;
    for (int i = 0; i < 9; i++)
        sum += (first9[i] - '0') * (10 - i);
    int check = 11 - sum % 11;
    if (check == 11)
        return 0;
    return check == 10 ? -1 : check;
}

bool nhs_number_is_valid(const char *digits10)
{
    if (digits10 == NULL || !leading_digits(digits10, 10) || digits10[10] != '\0')
        return false;
    return nhs_number_check_digit(digits10) == digits10[9] - '0';
}

int nhs_number_normalise(const char *in, char out[11])
{
    size_t n = 0;

    out[0] = '\0';
    if (in == NULL)
        return ERR_INVALID_INPUT;
    for (const char *p = in; *p != '\0'; p++) {
        if (*p == ' ' || *p == '-')
            continue;
        /* Anything but a digit, or an eleventh digit, makes the whole input invalid. */
        if (!is_digit(*p) || n == 10) {
            out[0] = '\0';
            return ERR_INVALID_INPUT;
        }
        out[n++] = *p;
    }
    out[n] = '\0';
    if (!nhs_number_is_valid(out)) {
        out[0] = '\0';
        return ERR_INVALID_INPUT;
    }
    return 0;
}

void nhs_number_format(const char *digits10, char out[13])
{
    out[0] = '\0';
    if (digits10 == NULL || !leading_digits(digits10, 10) || digits10[10] != '\0')
        return;
    memcpy(out, digits10, 3);
    out[3] = ' ';
    memcpy(out + 4, digits10 + 3, 3);
    out[7] = ' ';
    memcpy(out + 8, digits10 + 6, 4);
    out[12] = '\0';
}

#include <stdio.h>

int main(void)
{
    puts("pds-trace " PDS_TRACE_VERSION);
    return 0;
}

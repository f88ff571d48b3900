#!/usr/bin/env bash
# Fails on the banned functions of CONVENTIONS.md §2.9 and on // comments.
set -uo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.c' '*.h')
banned='sprintf|vsprintf|strcpy|strcat|strncpy|strncat|strtok|atoi|atol|atof|sscanf|gets|strerror|rand|system|localtime|gmtime'
status=0
# A call is the name not preceded by an identifier character or '_' and followed by '('.
# Lines that are comments (starting with /* or *) may name the functions they avoid.
if grep -nE "(^|[^A-Za-z0-9_])($banned)[[:space:]]*\(" $files |
   grep -vE '^[^:]+:[0-9]+:[[:space:]]*(/\*|\*)'; then
  echo "checksrc: banned function (see CONVENTIONS.md §2.9)" >&2; status=1
fi
if grep -nE '(^|[^:"])//' $files | grep -vE '"[^"]*//[^"]*"'; then
  echo "checksrc: // comment; use /* */" >&2; status=1
fi
# struct buf's fields belong to buf.c (include/pdstrace/buf.h).
if grep -nE 'priv_(mem|len|cap|max)\b' $(git ls-files '*.c' '*.h' | grep -vE '^(src/core/buf\.c|include/pdstrace/buf\.h)$'); then
  echo "checksrc: struct buf's fields are private to buf.c; use its functions" >&2; status=1
fi
exit $status

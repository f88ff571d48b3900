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
exit $status

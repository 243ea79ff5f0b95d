#!/usr/bin/env sh
# make test renders the check-trace report page in headless Chromium (tests/test_report.py).
# Debian's chromium is not on a new machine: install it where we may (root with apt-get), once.
# Where that cannot be done the test is skipped and says why; this script never fails the run.
for name in chromium chromium-browser google-chrome; do
  command -v "$name" >/dev/null 2>&1 && exit 0
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the report test (once per machine)"
  if timeout 600 apt-get update -qq >/dev/null 2>&1 &&
     DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq chromium >/dev/null 2>&1; then
    exit 0
  fi
  echo "could not install chromium: the report test will be skipped"
else
  echo "chromium is missing: the report test will be skipped (install Debian's chromium to run it)"
fi
exit 0

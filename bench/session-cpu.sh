#!/usr/bin/env bash
# session-cpu.sh SID: `PID TYPE SECONDS` for every process of session SID (a Chromium under
# chromedriver): the CPU seconds each used so far. TYPE is Chromium's --type (renderer, gpu,
# zygote), `network` for the network service, `utility` for other utilities, `browser` for the
# browser process, `driver` for chromedriver. The browser bench scripts read it before and after
# a page's run (bench/lib.sh `cpu_since`, `cpu_by_type`).
sid=$1
hz=$(getconf CLK_TCK)
for d in /proc/[0-9]*; do
  stat=$(cat "$d/stat" 2>/dev/null) || continue
  set -- $(printf '%s' "$stat" | sed 's/.*) //')
  [ "$4" = "$sid" ] || continue
  cmd=$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null)
  case "$cmd" in
    *chromedriver*) type=driver ;;
    *--type=utility*NetworkService*) type=network ;;
    *--type=utility*) type=utility ;;
    *--type=renderer*) type=renderer ;;
    *--type=gpu-process*) type=gpu ;;
    *--type=zygote*) type=zygote ;;
    *) type=browser ;;
  esac
  awk -v p="${d#/proc/}" -v t="$type" -v u="${12}" -v s="${13}" -v hz="$hz" 'BEGIN { printf "%s %s %.3f\n", p, t, (u + s) / hz }'
done

"""Running calls without FreeSWITCH: the text simulator (and later the audio simulator and demo)."""

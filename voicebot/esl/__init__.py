"""FreeSWITCH edge: ESL (the only importer of greenswitch), unicast media, outbound socket server."""

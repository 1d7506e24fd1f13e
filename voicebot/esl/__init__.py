"""FreeSWITCH edge: ESL (inbound connection, outbound socket server), unicast media."""

//! pbxtap: taps Asterisk's AMI, turns it into one event model, and fans it out.

import nodemailer from 'nodemailer'

export interface Mail {
  to: string
  subject: string
  text: string
}

export interface Mailer {
  send(mail: Mail): Promise<void>
}

/** Writes mails to the log: the default, so a fresh install can verify emails without SMTP. */
export function consoleMailer(log: (msg: string) => void): Mailer {
  return {
    async send(mail) {
      log(`mail to ${mail.to}: ${mail.subject}\n${mail.text}`)
    },
  }
}

export function smtpMailer(url: string, from: string): Mailer {
  const transport = nodemailer.createTransport(url)
  return {
    async send(mail) {
      await transport.sendMail({ from, ...mail })
    },
  }
}
